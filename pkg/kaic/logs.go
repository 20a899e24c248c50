package kaic

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
)

// maxLogBytes bounds what is kept of one container's log (its tail).
const maxLogBytes = 10 << 20

// LogsOptions say which run's logs to collect.
type LogsOptions struct {
	// Dir is the run directory.
	Dir string
}

// Logs collects what explains a run after the fact into one archive,
// <Dir>/logs/kaic-logs-<time>.tar.gz, and returns its path: the nodes'
// logs where the backend has them (kind, Cluster API), and, for every
// namespace the run created or installed into, its pods (as objects), the
// logs of their containers (the previous instance's too) and its events.
// It takes no lock, so it works while a run is going; what cannot be
// collected is written into the archive as an error file, not lost.
func (c *Client) Logs(ctx context.Context, o LogsOptions) (string, error) {
	state, err := pipeline.LoadState(o.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &UsageError{Err: fmt.Errorf("%s is not a kaic run directory (no %s)", o.Dir, pipeline.StateFileName)}
	}
	if err != nil {
		return "", err
	}
	dir := &RunDir{path: o.Dir} // read only: no lock taken
	r, err := c.runProfile(dir, "")
	if err != nil {
		return "", err
	}
	steps := progress.ForPhase(c.progress, "logs")
	stage, err := os.MkdirTemp("", "kaic-logs-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	var problems []string
	note := func(what string, err error) {
		if err != nil {
			problems = append(problems, what+": "+err.Error())
		}
	}

	if rec := state.Phase(pipeline.PhaseProvision); rec != nil && len(rec.Outputs) > 0 && rec.Status != pipeline.StatusTornDown {
		if b, err := backendOf(r.Profile); err == nil {
			step := steps.StartStep("the nodes' logs (" + string(b.name) + ")")
			prov := b.provisioner(r.Profile, provisionerOptions{runID: state.RunID, getenv: c.getenv})
			err := prov.CollectLogs(ctx, provision.Record(rec.Outputs), filepath.Join(stage, "nodes"))
			if errors.Is(err, provision.ErrNotImplemented) {
				err = nil
				steps.Notef("the %s backend has no node logs to collect", b.name)
			}
			step.Done(err)
			note("nodes", err)
		}
	}

	target, err := runCluster(state, o.Dir, r.Profile, Target{})
	if err == nil && target.Kubeconfig != "" {
		step := steps.StartStep("pods, container logs and events of the run's namespaces")
		err = collectNamespaces(ctx, dir, state.RunID, target, filepath.Join(stage, "namespaces"), note)
		step.Done(err)
	}
	note("cluster", err)

	if len(problems) > 0 {
		if err := os.WriteFile(filepath.Join(stage, "errors.txt"), []byte(strings.Join(problems, "\n")+"\n"), 0o644); err != nil {
			return "", err
		}
	}
	archive := filepath.Join(o.Dir, LogsDir, "kaic-logs-"+c.now().UTC().Format("20060102-150405")+".tar.gz")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFunc(archive, 0o644, func(w io.Writer) error { return tarGz(w, stage) }); err != nil {
		return "", err
	}
	return archive, nil
}

// collectNamespaces writes, for every namespace of the run (those carrying
// its id, and those its releases went into), pods.yaml, events.yaml and
// logs/<pod>/<container>[.previous].log under out/<namespace>.
func collectNamespaces(ctx context.Context, dir *RunDir, runID string, target Target, out string, note func(string, error)) error {
	cfg, err := existing.RESTConfig(target.Kubeconfig, target.Context)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	namespaces := map[string]bool{}
	if runID != "" {
		list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(ownership.Labels(runID)).String()})
		if err != nil {
			return err
		}
		for _, ns := range list.Items {
			namespaces[ns.Name] = true
		}
	}
	if records, err := dir.Releases(); err == nil {
		for _, rec := range records {
			if rec.Namespace != "" {
				namespaces[rec.Namespace] = true
			}
		}
	}
	names := make([]string, 0, len(namespaces))
	for ns := range namespaces {
		names = append(names, ns)
	}
	slices.Sort(names)
	for _, ns := range names {
		note("namespace "+ns, collectNamespace(ctx, client, ns, filepath.Join(out, ns), note))
	}
	return nil
}

func collectNamespace(ctx context.Context, client kubernetes.Interface, ns, out string, note func(string, error)) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := writeYAML(filepath.Join(out, "pods.yaml"), pods); err != nil {
		return err
	}
	events, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	slices.SortStableFunc(events.Items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	if err := writeYAML(filepath.Join(out, "events.yaml"), events); err != nil {
		return err
	}
	for _, pod := range pods.Items {
		for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
			base := filepath.Join(out, "logs", pod.Name, cs.Name)
			note(fmt.Sprintf("log of %s/%s %s", ns, pod.Name, cs.Name), writeLog(ctx, client, ns, pod.Name, cs.Name, false, base+".log"))
			if cs.RestartCount > 0 {
				note(fmt.Sprintf("previous log of %s/%s %s", ns, pod.Name, cs.Name), writeLog(ctx, client, ns, pod.Name, cs.Name, true, base+".previous.log"))
			}
		}
	}
	return nil
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func writeLog(ctx context.Context, client kubernetes.Interface, ns, pod, container string, previous bool, path string) error {
	limit := int64(maxLogBytes)
	stream, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, stream)
	return errors.Join(err, f.Close())
}

func writeYAML(path string, v any) error {
	data, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// tarGz writes the files under root into w as a gzipped tar, with paths
// relative to root.
func tarGz(w io.Writer, root string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	return errors.Join(err, tw.Close(), gz.Close())
}
