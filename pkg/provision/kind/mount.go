package kind

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindnodes "sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// archiveMountDir is where the profile's image archives appear, read-only,
// inside every node of a cluster whose engine runs on this host.
const archiveMountDir = "/kaic/image-archives"

// archiveMount is an image archive mounted into the nodes: its path there
// and its size on the host, which a node must see for the mount to be used.
type archiveMount struct {
	nodePath string
	size     int64
}

// mountArchives mounts each image archive read-only into every node of
// cfg and returns each mounted archive, by its path in the profile. A
// node's containerd then reads the archive itself, which costs about half
// the machine's CPU of streaming it through the engine's exec attach. An archive whose path the engine's volume syntax cannot
// carry (a colon) or that cannot be read is not mounted: it is streamed.
func mountArchives(cfg *v1alpha4.Cluster, archives []string) map[string]archiveMount {
	mounted := map[string]archiveMount{}
	var mounts []v1alpha4.Mount
	for i, a := range archives {
		abs, err := filepath.Abs(a)
		if err != nil || strings.Contains(abs, ":") {
			continue
		}
		fi, err := os.Stat(abs)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		in := fmt.Sprintf("%s/%d.tar", archiveMountDir, i)
		mounted[a] = archiveMount{nodePath: in, size: fi.Size()}
		mounts = append(mounts, v1alpha4.Mount{HostPath: abs, ContainerPath: in, Readonly: true})
	}
	for i := range cfg.Nodes {
		cfg.Nodes[i].ExtraMounts = append(cfg.Nodes[i].ExtraMounts, mounts...)
	}
	return mounted
}

// statArgs prints the size of each file named after it, -1 for one the
// node does not have.
var statArgs = []string{"sh", "-c", `for f do stat -L -c %s "$f" 2>/dev/null || echo -1; done`, "sh"}

// seenInNodes tells, for every node, which of the loads' mounted archives
// it sees whole (the size on the host): one command per node, all nodes at
// once. A node that cannot be asked sees none, so its archives are
// streamed; each such node is noted. seen[node][load] is false for every
// load that is not mounted.
func seenInNodes(ctx context.Context, nodes []kindnodes.Node, loads []archiveLoad, r progress.Steps) [][]bool {
	seen := make([][]bool, len(nodes))
	for j := range seen {
		seen[j] = make([]bool, len(loads))
	}
	args := slices.Clone(statArgs[1:])
	var which []int
	for i, l := range loads {
		if l.nodePath != "" {
			args = append(args, l.nodePath)
			which = append(which, i)
		}
	}
	if len(which) == 0 {
		return seen
	}
	var wg sync.WaitGroup
	for j, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			err := withCommandOutput(n.CommandContext(ctx, statArgs[0], args...).SetStdout(&out).Run())
			sizes := strings.Fields(out.String())
			if err == nil && len(sizes) != len(which) {
				err = fmt.Errorf("%d sizes for %d files: %q", len(sizes), len(which), out.String())
			}
			missing := 0
			if err == nil {
				for k, i := range which {
					size, perr := strconv.ParseInt(sizes[k], 10, 64)
					seen[j][i] = perr == nil && size == loads[i].size
					if !seen[j][i] {
						missing++
					}
				}
			}
			switch {
			case err != nil:
				r.Notef("node %s: the mounted image archives could not be checked (%v); streaming them instead", n.String(), err)
			case missing > 0:
				r.Notef("node %s does not see %d of the %d mounted image archives (is the engine on another host?); streaming those instead", n.String(), missing, len(which))
			}
		}()
	}
	wg.Wait()
	return seen
}
