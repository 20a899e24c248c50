package kind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kindnodes "sigs.k8s.io/kind/pkg/cluster/nodes"
	kindexec "sigs.k8s.io/kind/pkg/exec"

	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// importNode stands in for a kind node container in these unit tests: it
// takes `ctr images import --no-unpack` of stdin or of a file it has, and
// the size query of mounted archives, like a node does, recording what it
// received and how many imports overlapped. The real nodes are exercised
// by make e2e-offline.
type importNode struct {
	name string
	fail string // an archive whose import fails on this node
	slow time.Duration
	// files are the archives mounted into the node, by path there.
	files map[string]string

	mu        sync.Mutex
	received  []string
	fromMount []string

	running, peak *atomic.Int32
}

func (n *importNode) String() string              { return n.name }
func (n *importNode) Role() (string, error)       { return "worker", nil }
func (n *importNode) IP() (string, string, error) { return "", "", nil }
func (n *importNode) SerialLogs(io.Writer) error  { return nil }
func (n *importNode) CommandContext(_ context.Context, c string, a ...string) kindexec.Cmd {
	return n.Command(c, a...)
}

func (n *importNode) Command(c string, args ...string) kindexec.Cmd {
	return &importCmd{node: n, argv: append([]string{c}, args...)}
}

type importCmd struct {
	node   *importNode
	argv   []string
	stdin  io.Reader
	stdout io.Writer
}

func (c *importCmd) SetEnv(...string) kindexec.Cmd      { return c }
func (c *importCmd) SetStdin(r io.Reader) kindexec.Cmd  { c.stdin = r; return c }
func (c *importCmd) SetStdout(w io.Writer) kindexec.Cmd { c.stdout = w; return c }
func (c *importCmd) SetStderr(io.Writer) kindexec.Cmd   { return c }

func (c *importCmd) Run() error {
	n := c.node
	switch strings.Join(c.argv[:2], " ") {
	case "sh -c":
		if !slices.Equal(c.argv[:len(statArgs)], statArgs) {
			return fmt.Errorf("unexpected shell command %q", c.argv)
		}
		for _, path := range c.argv[len(statArgs):] {
			size := -1
			if data, ok := n.files[path]; ok {
				size = len(data)
			}
			fmt.Fprintln(c.stdout, size)
		}
		return nil
	case "ctr --namespace=k8s.io":
		fromFile := slices.Equal(c.argv[:len(importArgs)-1], importArgs[:len(importArgs)-1]) && len(c.argv) == len(importArgs) && c.argv[len(c.argv)-1] != "-"
		if fromFile {
			data, ok := n.files[c.argv[len(c.argv)-1]]
			if !ok {
				return fmt.Errorf("ctr: open %s: no such file or directory", c.argv[len(c.argv)-1])
			}
			n.mu.Lock()
			n.received = append(n.received, data)
			n.fromMount = append(n.fromMount, data)
			n.mu.Unlock()
			return nil
		}
		if !slices.Equal(c.argv, importArgs) {
			return fmt.Errorf("unexpected import command %q", c.argv)
		}
		now := n.running.Add(1)
		defer n.running.Add(-1)
		for {
			p := n.peak.Load()
			if now <= p || n.peak.CompareAndSwap(p, now) {
				break
			}
		}
		data, err := io.ReadAll(c.stdin)
		if err != nil {
			return err
		}
		time.Sleep(n.slow)
		if string(data) == n.fail {
			return errors.New("ctr: unpacking failed")
		}
		n.mu.Lock()
		n.received = append(n.received, string(data))
		n.mu.Unlock()
		return nil
	}
	return fmt.Errorf("unexpected command %q", c.argv)
}

func archives(names ...string) []archiveLoad {
	out := make([]archiveLoad, 0, len(names))
	for _, name := range names {
		out = append(out, archiveLoad{name: name, write: func(w io.Writer) error {
			_, err := io.WriteString(w, name)
			return err
		}})
	}
	return out
}

// collectEvents returns progress steps that keep text of every event of a
// kind, and a function that returns what was kept.
func collectEvents(kind progress.Kind, text func(progress.Event) string) (progress.Steps, func() []string) {
	var mu sync.Mutex
	var kept []string
	steps := progress.ForPhase(progress.ReporterFunc(func(e progress.Event) {
		if e.Kind == kind {
			mu.Lock()
			kept = append(kept, text(e))
			mu.Unlock()
		}
	}), "provision")
	return steps, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(kept)
	}
}

func importNodes(count int, slow time.Duration) ([]*importNode, []kindnodes.Node) {
	running, peak := &atomic.Int32{}, &atomic.Int32{}
	var fakes []*importNode
	var nodes []kindnodes.Node
	for i := range count {
		n := &importNode{name: fmt.Sprintf("node-%d", i), slow: slow, running: running, peak: peak}
		fakes = append(fakes, n)
		nodes = append(nodes, n)
	}
	return fakes, nodes
}

func TestLoadConcurrentlyReachesEveryNodeAtOnce(t *testing.T) {
	fakes, nodes := importNodes(3, 50*time.Millisecond)
	names := []string{"a.tar", "b.tar", "c.tar", "d.tar"}
	var done []int
	steps, events := collectEvents(progress.StepStarted, func(e progress.Event) string { return e.Step })
	if err := loadConcurrently(context.Background(), nodes, archives(names...), steps, func(i int) { done = append(done, i) }); err != nil {
		t.Fatal(err)
	}
	started := events()
	for _, n := range fakes {
		got := strings.Join(slices.Sorted(slices.Values(n.received)), ",")
		if got != strings.Join(names, ",") {
			t.Errorf("node %s received %s, want every archive", n.name, got)
		}
	}
	if len(done) != len(names) {
		t.Errorf("done called for %v, want every archive", done)
	}
	// 12 imports of 50ms each: one at a time would take 600ms.
	if p := fakes[0].peak.Load(); p < 2 || p > importConcurrency {
		t.Errorf("%d imports ran at once, want between 2 and %d", p, importConcurrency)
	}
	for _, name := range names {
		if !slices.Contains(started, "loading "+name+" into 3 nodes") {
			t.Errorf("no step for %s in %q", name, started)
		}
	}
}

func TestLoadConcurrentlyNamesTheFailedArchiveAndNode(t *testing.T) {
	fakes, nodes := importNodes(2, 0)
	fakes[1].fail = "b.tar"
	var done []int
	err := loadConcurrently(context.Background(), nodes, archives("a.tar", "b.tar"), progress.ForPhase(progress.Discard, "provision"), func(i int) { done = append(done, i) })
	if err == nil || !strings.Contains(err.Error(), "loading b.tar into node node-1") || !strings.Contains(err.Error(), "unpacking failed") {
		t.Fatalf("error %v, want one naming b.tar, node-1 and ctr's error", err)
	}
	for _, i := range done {
		if i == 1 {
			t.Errorf("b.tar reported loaded although node-1 refused it")
		}
	}
}

func TestLoadImagesRecordsWhatReachedEveryNode(t *testing.T) {
	_, nodes := importNodes(2, 0)
	rec := provision.Record{}
	images := []provision.Image{
		{Ref: "kaic.dev/probe:1", WriteArchive: func(w io.Writer) error { _, err := io.WriteString(w, "probe"); return err }},
	}
	loads := []archiveLoad{{name: images[0].Ref, write: images[0].WriteArchive}}
	if err := loadConcurrently(context.Background(), nodes, loads, progress.ForPhase(progress.Discard, "provision"), func(i int) { rec.AddLoaded(images[i].Ref) }); err != nil {
		t.Fatal(err)
	}
	if !rec.Loaded("kaic.dev/probe:1") {
		t.Errorf("record %v does not list the loaded image", rec)
	}
}

// bootingNode is a node container whose containerd answers only after a
// number of tries, as while systemd is still starting it.
type bootingNode struct {
	importNode
	triesLeft atomic.Int32
}

func (n *bootingNode) Command(c string, args ...string) kindexec.Cmd {
	return &versionCmd{node: n, argv: append([]string{c}, args...)}
}

type versionCmd struct {
	importCmd
	node *bootingNode
	argv []string
}

func (c *versionCmd) Run() error {
	if strings.Join(c.argv, " ") != "ctr --namespace=k8s.io version" {
		return fmt.Errorf("unexpected command %q", c.argv)
	}
	if c.node.triesLeft.Add(-1) >= 0 {
		return errors.New("ctr: failed to dial /run/containerd/containerd.sock: no such file")
	}
	return nil
}

// appearingNodes lists one more node on each call, as kind starts the
// containers one by one.
type appearingNodes struct {
	nodes []kindnodes.Node
	calls int
}

func (a *appearingNodes) ListInternalNodes(string) ([]kindnodes.Node, error) {
	a.calls++
	return a.nodes[:min(a.calls, len(a.nodes))], nil
}

func TestWaitContainerdWaitsForEveryNodeToAnswer(t *testing.T) {
	a, b := &bootingNode{importNode: importNode{name: "cp"}}, &bootingNode{importNode: importNode{name: "worker"}}
	a.triesLeft.Store(1)
	b.triesLeft.Store(3)
	lister := &appearingNodes{nodes: []kindnodes.Node{a, b}}
	if err := waitContainerd(context.Background(), lister, "c", 2); err != nil {
		t.Fatal(err)
	}
	if a.triesLeft.Load() >= 0 || b.triesLeft.Load() >= 0 {
		t.Errorf("returned before both containerds answered (tries left %d, %d)", a.triesLeft.Load(), b.triesLeft.Load())
	}
	// Once a node answered it is not asked again.
	if got := a.triesLeft.Load(); got != -1 {
		t.Errorf("the control plane's containerd was asked %d times after it answered", -1-got)
	}
}

func TestWaitContainerdStopsWhenCancelled(t *testing.T) {
	n := &bootingNode{importNode: importNode{name: "cp"}}
	n.triesLeft.Store(1 << 20)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(errors.New("kind create failed")) })
	err := waitContainerd(ctx, &appearingNodes{nodes: []kindnodes.Node{n}}, "c", 1)
	if err == nil || err.Error() != "kind create failed" {
		t.Fatalf("error %v, want the cancellation's cause", err)
	}
}

// mountedArchives are loads of archives mounted at /kaic/<name> in the
// nodes, each archive's content its name.
func mountedArchives(names ...string) []archiveLoad {
	loads := archives(names...)
	for i := range loads {
		loads[i].nodePath = "/kaic/" + loads[i].name
		loads[i].size = int64(len(loads[i].name))
	}
	return loads
}

func TestLoadConcurrentlyImportsMountedArchivesInsideTheNodes(t *testing.T) {
	fakes, nodes := importNodes(3, 0)
	names := []string{"a.tar", "b.tar", "c.tar"}
	full := map[string]string{"/kaic/a.tar": "a.tar", "/kaic/b.tar": "b.tar", "/kaic/c.tar": "c.tar"}
	fakes[0].files = full
	// A node on an engine of another host: the mount points are empty.
	fakes[1].files = nil
	// A node that sees a different file at one path (a truncated copy).
	fakes[2].files = map[string]string{"/kaic/a.tar": "a.tar", "/kaic/b.tar": "b.ta", "/kaic/c.tar": "c.tar"}
	steps, events := collectEvents(progress.Message, func(e progress.Event) string { return e.Message })
	if err := loadConcurrently(context.Background(), nodes, mountedArchives(names...), steps, nil); err != nil {
		t.Fatal(err)
	}
	notes := events()
	for _, n := range fakes {
		if got := strings.Join(slices.Sorted(slices.Values(n.received)), ","); got != strings.Join(names, ",") {
			t.Errorf("node %s received %s, want every archive once", n.name, got)
		}
	}
	want := map[string]string{"node-0": "a.tar,b.tar,c.tar", "node-1": "", "node-2": "a.tar,c.tar"}
	for _, n := range fakes {
		if got := strings.Join(slices.Sorted(slices.Values(n.fromMount)), ","); got != want[n.name] {
			t.Errorf("node %s imported %q from its mounts, want %q", n.name, got, want[n.name])
		}
	}
	joined := strings.Join(notes, "\n")
	for _, w := range []string{"node node-1 does not see 3 of the 3", "node node-2 does not see 1 of the 3"} {
		if !strings.Contains(joined, w) {
			t.Errorf("notes %q do not say %q", notes, w)
		}
	}
	if strings.Contains(joined, "node-0") {
		t.Errorf("notes %q name node-0, which saw every archive", notes)
	}
}
