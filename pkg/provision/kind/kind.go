package kind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	kindnodes "sigs.k8s.io/kind/pkg/cluster/nodes"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// Record keys of the kind backend besides provision's common ones.
const (
	// KeyNodeProvider is the node provider the cluster was created with.
	KeyNodeProvider = "nodeProvider"
	// KeyLogs is where kind's logs were exported after a failure.
	KeyLogs = "logs"
)

// Name is the backend's name in profiles (spec.cluster.backend).
const Name = profile.BackendKind

// Provisioner creates kind clusters with kind's Go library.
type Provisioner struct {
	// Cluster is the profile's kind section (spec.cluster.kind).
	Cluster *profile.KindCluster
	// RunID labels every node the cluster has; Delete removes only a
	// cluster whose nodes carry it.
	RunID string
	// Retain keeps the nodes of a cluster whose creation failed, for
	// debugging; by default they are deleted after their logs are exported.
	Retain bool
	// ExportKubeconfig also merges the cluster into the user's kubeconfig.
	ExportKubeconfig bool
	// WaitTimeout bounds the wait for the control plane and nodes (default 5m).
	WaitTimeout time.Duration
	// CgroupV1 tells the provisioner the host runs cgroup v1 (nil: detect).
	CgroupV1 *bool
	// Images are loaded into every node after the profile's image
	// archives, while kind runs kubeadm and the nodes get Ready.
	Images []provision.Image
}

var _ provision.Provisioner = (*Provisioner)(nil)

// providerOption picks kind's node provider from the profile and returns
// the name of the one picked ("detected" when only kind could tell).
func providerOption(ctx context.Context, name string) (kindcluster.ProviderOption, string, error) {
	switch name {
	case "docker":
		return kindcluster.ProviderWithDocker(), name, nil
	case "podman":
		return kindcluster.ProviderWithPodman(), name, nil
	case "nerdctl":
		return kindcluster.ProviderWithNerdctl("nerdctl"), name, nil
	case "", "auto":
		if env := os.Getenv("KIND_EXPERIMENTAL_PROVIDER"); env != "" && env != "auto" {
			return providerOption(ctx, env)
		}
		if detected, err := detectProvider(ctx); err == nil {
			return providerOption(ctx, detected)
		}
		opt, err := kindcluster.DetectNodeProvider()
		if err != nil {
			return nil, "", fmt.Errorf("no container runtime found for kind nodes (docker, nerdctl or podman): %w; kaic doctor says more", err)
		}
		return opt, "detected", nil
	}
	return nil, "", fmt.Errorf("unknown node provider %q", name)
}

// HostCgroupV1 reports whether this host mounts cgroup v1.
func HostCgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}

// AcceptCgroupV1 tells the kubelets of cfg to run on cgroup v1, which
// kubelet 1.35+ refuses unless told otherwise, and reports whether it did:
// it does not when the profile's kubelet configuration sets failCgroupV1
// itself.
func AcceptCgroupV1(cfg *v1alpha4.Cluster, k *profile.KindCluster) (bool, error) {
	if _, set := k.KubeletConfig["failCgroupV1"]; set {
		return false, nil
	}
	patch, err := kubeletPatch(map[string]any{"failCgroupV1": false})
	if err != nil {
		return false, err
	}
	cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, patch)
	return true, nil
}

// Create creates the cluster, waits for its nodes, loads the profile's
// image archives into every node and writes the kubeconfig into dir. The
// record names the cluster from before kind starts, so an interrupted or
// failed creation is still torn down by kaic down.
func (p *Provisioner) Create(ctx context.Context, paths provision.Paths, r progress.Steps) (provision.Record, error) {
	k := p.Cluster
	if k == nil {
		return nil, fmt.Errorf("no kind section (spec.cluster.kind)")
	}
	if p.RunID == "" {
		return nil, fmt.Errorf("kind provisioner: no run id: the nodes could not be told apart from another run's")
	}
	rec := provision.Record{provision.KeyBackend: string(Name), provision.KeyClusterName: k.Name, provision.KeyRunID: p.RunID}
	cfg, err := Config(k, p.RunID)
	if err != nil {
		return rec, err
	}
	cgroupV1 := HostCgroupV1()
	if p.CgroupV1 != nil {
		cgroupV1 = *p.CgroupV1
	}
	if cgroupV1 {
		told, err := AcceptCgroupV1(cfg, k)
		if err != nil {
			return rec, err
		}
		if told {
			r.Notef("warning: this host uses cgroup v1; the kubelet is told to accept it (failCgroupV1: false)")
		}
	}
	opt, providerName, err := providerOption(ctx, k.Provider)
	if err != nil {
		return rec, err
	}
	rec[KeyNodeProvider] = providerName
	var mounted map[string]archiveMount
	if cli, ok := cliFor(providerName); ok && len(k.ImageArchives) > 0 && cli.localEngine(ctx) {
		mounted = mountArchives(cfg, k.ImageArchives)
		if len(mounted) > 0 {
			r.Notef("%d of %d image archives mounted read-only into every node (%s); each node imports them from there", len(mounted), len(k.ImageArchives), archiveMountDir)
		}
	}
	provider := kindcluster.NewProvider(opt, kindcluster.ProviderWithLogger(&kindLogger{r: r}))
	existing, err := provider.List()
	if err != nil {
		return rec, fmt.Errorf("listing kind clusters: %w", err)
	}
	if slices.Contains(existing, k.Name) {
		return rec, &ExistsError{Name: k.Name}
	}
	// kind creates its network on first use and leaves it behind; remember
	// whether this run brings it into being, so kaic down can remove it.
	if cli, ok := cliFor(providerName); ok {
		if exists, err := cli.networkExists(ctx, cli.network()); err == nil && !exists {
			rec[KeyNetworkCreated] = cli.network()
		}
	}
	kubeconfig := paths.Kubeconfig
	rec[provision.KeyKubeconfig] = kubeconfig
	rec[provision.KeyContext] = "kind-" + k.Name
	rec[provision.KeyCreated] = "true"
	wait := p.WaitTimeout
	if wait == 0 {
		wait = 5 * time.Minute
	}

	// The images go in while kind runs kubeadm: every node's containerd
	// runs from the moment its container has booted, and nothing kind does
	// afterwards restarts it (kaic sets no containerd config patches).
	loadCtx, stopLoading := context.WithCancel(ctx)
	defer stopLoading()
	loaded := make(chan error, 1)
	go func() {
		if err := waitContainerd(loadCtx, provider, k.Name, len(cfg.Nodes)); err != nil {
			loaded <- err
			return
		}
		loaded <- p.load(loadCtx, provider, rec, mounted, r)
	}()
	// stopLoad ends the imports not yet started and waits for those
	// running, for a creation that failed or was cancelled.
	stopLoad := func() {
		stopLoading()
		<-loaded
	}

	step := r.StartStep(fmt.Sprintf("creating kind cluster %s (%d nodes, image %s)", k.Name, len(cfg.Nodes), k.NodeImage))
	created := make(chan error, 1)
	go func() {
		created <- provider.Create(k.Name,
			kindcluster.CreateWithV1Alpha4Config(cfg),
			kindcluster.CreateWithKubeconfigPath(kubeconfig),
			// No wait of kind's: it polls kubectl inside the node for the
			// control plane only. WaitNodesReady below watches every node
			// while the images load.
			kindcluster.CreateWithRetain(true),
			kindcluster.CreateWithDisplayUsage(false),
			kindcluster.CreateWithDisplaySalutation(false),
		)
	}()
	select {
	case <-ctx.Done():
		// kind's library cannot be cancelled; the record already names
		// the cluster, so kaic down removes whatever it got to. Imports
		// under way are not waited for: the nodes they feed are going.
		stopLoading()
		step.Done(ctx.Err())
		return rec, fmt.Errorf("creating kind cluster %s: %w (kaic down removes what was created)", k.Name, ctx.Err())
	case err = <-created:
	}
	err = withCommandOutput(err)
	step.Done(err)
	if err != nil {
		stopLoad()
		if alreadyExists(err) {
			// Another run created a cluster of this name after the check
			// above: nothing here is this run's.
			delete(rec, provision.KeyCreated)
			return rec, &ExistsError{Name: k.Name}
		}
		logs := filepath.Join(paths.Dir, "logs", "kind")
		if lerr := provider.CollectLogs(k.Name, logs); lerr == nil {
			rec[KeyLogs] = logs
			r.Notef("kind logs exported to %s", logs)
		}
		if !p.Retain {
			if derr := p.deleteOwned(ctx, provider, rec, r); derr == nil {
				rec[provision.KeyCreated] = "false"
			} else {
				r.Notef("cluster %s not deleted: %v", k.Name, derr)
			}
		} else {
			r.Notef("nodes of %s kept for debugging (--retain); kaic down removes them", k.Name)
		}
		return rec, fmt.Errorf("creating kind cluster %s: %w", k.Name, err)
	}
	if err := os.Chmod(kubeconfig, 0o600); err != nil {
		stopLoad()
		return rec, err
	}
	if err := WaitNodesReady(ctx, kubeconfig, len(cfg.Nodes), wait, r); err != nil {
		stopLoad()
		if ctx.Err() == nil {
			logs := filepath.Join(paths.Dir, "logs", "kind")
			if lerr := provider.CollectLogs(k.Name, logs); lerr == nil {
				rec[KeyLogs] = logs
				r.Notef("kind logs exported to %s; the cluster is kept, kaic down removes it", logs)
			}
		}
		return rec, err
	}
	if err := <-loaded; err != nil {
		return rec, err
	}
	if p.ExportKubeconfig {
		if err := provider.ExportKubeConfig(k.Name, "", false); err != nil {
			return rec, fmt.Errorf("exporting the kubeconfig: %w", err)
		}
		r.Notef("context kind-%s added to your kubeconfig", k.Name)
	}
	return rec, nil
}

// load imports the profile's image archives, then the images kaic
// brings, into every node of the cluster being created. mounted gives the
// path inside the nodes of each archive mounted into them.
func (p *Provisioner) load(ctx context.Context, provider *kindcluster.Provider, rec provision.Record, mounted map[string]archiveMount, r progress.Steps) error {
	k := p.Cluster
	if len(k.ImageArchives) > 0 {
		if err := LoadArchives(ctx, provider, k.Name, k.ImageArchives, mounted, r); err != nil {
			return err
		}
	}
	return loadImages(ctx, provider, k.Name, p.Images, rec, r)
}

// containerdPoll is how often waitContainerd looks for the nodes.
const containerdPoll = 500 * time.Millisecond

// waitContainerd waits until the cluster has want node containers and
// each one's containerd answers, which is soon after kind has started
// them and long before kubeadm is done.
func waitContainerd(ctx context.Context, provider nodeLister, cluster string, want int) error {
	answering := map[string]bool{}
	for {
		nodes, err := provider.ListInternalNodes(cluster)
		if err == nil && len(nodes) >= want {
			for _, n := range nodes {
				if !answering[n.String()] && n.Command("ctr", "--namespace=k8s.io", "version").Run() == nil {
					answering[n.String()] = true
				}
			}
			if len(answering) >= want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(containerdPoll):
		}
	}
}

// nodeLister is the part of kind's provider waitContainerd uses.
type nodeLister interface {
	ListInternalNodes(name string) ([]kindnodes.Node, error)
}

// importConcurrency bounds the image imports running at once across nodes
// and archives: each is a node's containerd unpacking layers, so a few at
// once keep the disks and cores busy without thrashing them.
const importConcurrency = 4

// LoadArchives imports image archives into every node's containerd, the
// archives and nodes concurrently (importConcurrency imports at a time).
// mounted gives the path inside the nodes of each archive mounted into
// them (mountArchives); a node imports those from the mount, and streams
// the others and any mounted archive it does not see whole.
func LoadArchives(ctx context.Context, provider *kindcluster.Provider, cluster string, archives []string, mounted map[string]archiveMount, r progress.Steps) error {
	nodes, err := provider.ListInternalNodes(cluster)
	if err != nil {
		return fmt.Errorf("listing the nodes of %s: %w", cluster, err)
	}
	loads := make([]archiveLoad, 0, len(archives))
	for _, archive := range archives {
		loads = append(loads, archiveLoad{
			name:         filepath.Base(archive),
			archiveMount: mounted[archive],
			write: func(w io.Writer) error {
				f, err := os.Open(archive)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(w, f)
				return err
			},
		})
	}
	return loadConcurrently(ctx, nodes, loads, r, nil)
}

// archiveLoad is one image archive to import into every node.
type archiveLoad struct {
	name  string
	write func(io.Writer) error
	// archiveMount is where the archive is mounted inside the nodes (a
	// zero nodePath when it is not).
	archiveMount
}

// loadConcurrently imports every archive into every node, at most
// importConcurrency at a time, one progress step per archive. done is
// called (serially) for each archive that reached every node. The first
// failure stops the imports not yet started and is returned.
func loadConcurrently(ctx context.Context, nodes []kindnodes.Node, loads []archiveLoad, r progress.Steps, done func(i int)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	seen := seenInNodes(ctx, nodes, loads, r)
	sem := make(chan struct{}, importConcurrency)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
			cancel(err)
		}
	}
	for i, l := range loads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			step := r.StartStep(fmt.Sprintf("loading %s into %d nodes", l.name, len(nodes)))
			errs := make([]error, len(nodes))
			var nodesWG sync.WaitGroup
			for j, n := range nodes {
				nodesWG.Add(1)
				go func() {
					defer nodesWG.Done()
					select {
					case sem <- struct{}{}:
					case <-ctx.Done():
						errs[j] = context.Cause(ctx)
						return
					}
					defer func() { <-sem }()
					var err error
					if seen[j][i] {
						err = importMounted(ctx, n, l.nodePath)
					} else {
						err = importArchive(n, l.write)
					}
					if err != nil {
						errs[j] = fmt.Errorf("loading %s into node %s: %w", l.name, n.String(), err)
						fail(errs[j])
					}
				}()
			}
			nodesWG.Wait()
			err := errors.Join(errs...)
			step.Done(err)
			if err == nil && done != nil {
				mu.Lock()
				done(i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// importArgs is the command that imports an archive from stdin into a
// node's containerd: every platform, with digest references, and without
// unpacking the layers. containerd's CRI unpacks an image into the node's
// snapshotter when a container first uses it, as after a pull: so each
// node unpacks only the images its pods run (a control-plane node that
// the stack's Deployments avoid, almost none), and the cores kubeadm
// needs while the cluster comes up are not spent on layers no pod of that
// node reads.
var importArgs = []string{"ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--digests", "--no-unpack", "-"}

// importMounted imports an archive mounted into the node from its path
// there, with importArgs' options.
func importMounted(ctx context.Context, n kindnodes.Node, path string) error {
	args := append(slices.Clone(importArgs[1:len(importArgs)-1]), path)
	return withCommandOutput(n.CommandContext(ctx, importArgs[0], args...).Run())
}

// importArchive streams the archive write produces into a node's
// containerd.
func importArchive(n kindnodes.Node, write func(io.Writer) error) error {
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err)
		written <- err
	}()
	err := withCommandOutput(n.Command(importArgs[0], importArgs[1:]...).SetStdin(pr).Run())
	pr.CloseWithError(errors.New("the node stopped reading the image"))
	if werr := <-written; err == nil && werr != nil {
		err = werr
	}
	return err
}

// LoadImages loads images into every node of the cluster rec records (one
// kaic created) and records them in rec; images rec already records are
// not loaded again.
func (p *Provisioner) LoadImages(ctx context.Context, rec provision.Record, images []provision.Image, r progress.Steps) error {
	var missing []provision.Image
	for _, img := range images {
		if !rec.Loaded(img.Ref) {
			missing = append(missing, img)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	opt, err := p.recordedProvider(ctx, rec)
	if err != nil {
		return err
	}
	provider := kindcluster.NewProvider(opt, kindcluster.ProviderWithLogger(&kindLogger{r: r}))
	return loadImages(ctx, provider, rec[provision.KeyClusterName], missing, rec, r)
}

// loadImages streams each image into every node's containerd and records it.
func loadImages(ctx context.Context, provider *kindcluster.Provider, cluster string, images []provision.Image, rec provision.Record, r progress.Steps) error {
	if len(images) == 0 {
		return nil
	}
	nodes, err := provider.ListInternalNodes(cluster)
	if err != nil {
		return fmt.Errorf("listing the nodes of %s: %w", cluster, err)
	}
	loads := make([]archiveLoad, 0, len(images))
	for _, img := range images {
		loads = append(loads, archiveLoad{name: img.Ref, write: img.WriteArchive})
	}
	return loadConcurrently(ctx, nodes, loads, r, func(i int) { rec.AddLoaded(images[i].Ref) })
}

// Delete deletes the cluster the record names if kaic created it and its
// nodes carry the recorded run id, and the node network if the record says
// this run created it.
func (p *Provisioner) Delete(ctx context.Context, rec provision.Record, r progress.Steps) error {
	name := rec[provision.KeyClusterName]
	if rec[provision.KeyCreated] != "true" || name == "" {
		r.Notef("the run created no kind cluster: nothing to delete")
		return nil
	}
	opt, err := p.recordedProvider(ctx, rec)
	if err != nil {
		return err
	}
	provider := kindcluster.NewProvider(opt, kindcluster.ProviderWithLogger(&kindLogger{r: r}))
	return p.deleteOwned(ctx, provider, rec, r)
}

// deleteOwned deletes the recorded cluster after checking that its nodes
// carry the recorded run id: a cluster of the same name that another run
// or the user created is left alone.
func (p *Provisioner) deleteOwned(ctx context.Context, provider *kindcluster.Provider, rec provision.Record, r progress.Steps) error {
	name, runID := rec[provision.KeyClusterName], rec[provision.KeyRunID]
	nodes, err := provider.ListNodes(name)
	if err != nil {
		return fmt.Errorf("listing the nodes of kind cluster %s: %w", name, err)
	}
	if len(nodes) == 0 {
		r.Notef("kind cluster %s has no nodes left", name)
	} else {
		if err := nodesCarryRunID(ctx, rec[KeyNodeProvider], nodes, runID); err != nil {
			return fmt.Errorf("kind cluster %s is left as it is: %w", name, err)
		}
		step := r.StartStep("deleting kind cluster " + name)
		// Deleting with the run's own kubeconfig leaves the user's untouched.
		err = provider.Delete(name, rec[provision.KeyKubeconfig])
		step.Done(err)
		if err != nil {
			return err
		}
	}
	removeCreatedNetwork(ctx, rec, r)
	return nil
}

// removeCreatedNetwork removes the node network when the record says this
// run created it and no container uses it any more.
func removeCreatedNetwork(ctx context.Context, rec provision.Record, r progress.Steps) {
	network := rec[KeyNetworkCreated]
	cli, ok := cliFor(rec[KeyNodeProvider])
	if network == "" || !ok {
		return
	}
	if exists, err := cli.networkExists(ctx, network); err != nil || !exists {
		return
	}
	if err := cli.removeNetwork(ctx, network); err != nil {
		// Another kind cluster joined the network since.
		r.Notef("network %s kept: %v", network, err)
		return
	}
	r.Notef("network %s removed (this run created it)", network)
}

// recordedProvider is the node provider the record names, or the profile's.
func (p *Provisioner) recordedProvider(ctx context.Context, rec provision.Record) (kindcluster.ProviderOption, error) {
	name := rec[KeyNodeProvider]
	if _, ok := cliFor(name); !ok {
		name = ""
		if p.Cluster != nil {
			name = p.Cluster.Provider
		}
	}
	opt, _, err := providerOption(ctx, name)
	return opt, err
}

// CollectLogs exports kind's logs of the cluster into dir.
func (p *Provisioner) CollectLogs(ctx context.Context, rec provision.Record, dir string) error {
	opt, err := p.recordedProvider(ctx, rec)
	if err != nil {
		return err
	}
	return kindcluster.NewProvider(opt).CollectLogs(rec[provision.KeyClusterName], dir)
}

// kindLogger routes kind's user-facing messages into kaic's progress.
type kindLogger struct{ r progress.Steps }

var _ kindlog.Logger = (*kindLogger)(nil)

func (l *kindLogger) Warn(message string)               { l.r.Notef("kind: %s", message) }
func (l *kindLogger) Warnf(format string, args ...any)  { l.Warn(fmt.Sprintf(format, args...)) }
func (l *kindLogger) Error(message string)              { l.r.Notef("kind: error: %s", message) }
func (l *kindLogger) Errorf(format string, args ...any) { l.Error(fmt.Sprintf(format, args...)) }
func (l *kindLogger) V(level kindlog.Level) kindlog.InfoLogger {
	return kindInfo{l: l, enabled: level == 0}
}

type kindInfo struct {
	l       *kindLogger
	enabled bool
}

func (i kindInfo) Info(message string) {
	if !i.enabled {
		return
	}
	// kind's status lines carry emoji and spinner state; keep the words.
	msg := strings.TrimSpace(strings.Map(func(r rune) rune {
		if r > 0x2000 {
			return -1
		}
		return r
	}, message))
	if msg != "" {
		i.l.r.Notef("kind: %s", msg)
	}
}
func (i kindInfo) Infof(format string, args ...any) { i.Info(fmt.Sprintf(format, args...)) }
func (i kindInfo) Enabled() bool                    { return i.enabled }

// withCommandOutput adds to an error of kind's the last lines the failed
// command (docker, podman, nerdctl) printed, which kind keeps out of its
// message: "exit status 1" alone does not say that the registry was
// unreachable or the engine refused a privileged container.
func withCommandOutput(err error) error {
	re := kindexec.RunErrorForError(err)
	if re == nil {
		return err
	}
	var lines []string
	for _, l := range strings.Split(string(re.Output), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return err
	}
	const keep = 3
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return fmt.Errorf("%w: %s", err, strings.Join(lines, "; "))
}
