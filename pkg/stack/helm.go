package stack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"

	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// maxHistory bounds the revisions Helm keeps per release.
const maxHistory = 10

// helmConfig returns a Helm action configuration for releases stored in ns.
func (in *Installer) helmConfig(ns string) (*action.Configuration, error) {
	cl, err := in.target()
	if err != nil {
		return nil, err
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(in.logger.With("namespace", ns).Handler()))
	if err := cfg.Init(cl.getter(ns), ns, "secret"); err != nil {
		return nil, err
	}
	if kc, ok := cfg.KubeClient.(*kube.Client); ok {
		kc.Namespace = ns
	}
	return cfg, nil
}

// lastRelease returns the latest revision of a release, nil if there is
// none.
func lastRelease(cfg *action.Configuration, name string) (*release.Release, error) {
	history, err := cfg.Releases.History(name)
	if errors.Is(err, driver.ErrReleaseNotFound) || (err == nil && len(history) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var last *release.Release
	for _, h := range history {
		r, ok := h.(*release.Release)
		if !ok {
			return nil, fmt.Errorf("release %s: unexpected release type %T", name, h)
		}
		if last == nil || r.Version > last.Version {
			last = r
		}
	}
	return last, nil
}

// lastDeployedRevision returns the newest revision that was deployed
// (deployed or superseded), 0 if none.
func lastDeployedRevision(cfg *action.Configuration, name string) int {
	history, err := cfg.Releases.History(name)
	if err != nil {
		return 0
	}
	best := 0
	for _, h := range history {
		r, ok := h.(*release.Release)
		if ok && (r.Info.Status == rcommon.StatusDeployed || r.Info.Status == rcommon.StatusSuperseded) && r.Version > best {
			best = r.Version
		}
	}
	return best
}

func namespaceOf(c profile.Component) string {
	if c.Namespace != "" {
		return c.Namespace
	}
	return "default"
}

// installChart installs, upgrades or leaves alone a component's release,
// then waits for its declared readiness. On failure it diagnoses the
// unready objects and rolls the release back.
func (in *Installer) installChart(ctx context.Context, c profile.Component, rec *Record) error {
	ns := namespaceOf(c)
	rec.Namespace = ns
	lc, err := in.loadChart(ctx, c.Helm)
	if err != nil {
		return err
	}
	rec.ChartName, rec.Version, rec.Digest, rec.Source = lc.chart.Metadata.Name, lc.chart.Metadata.Version, lc.digest, lc.kind
	vals, err := in.values(c)
	if err != nil {
		return err
	}
	cfg, err := in.helmConfig(ns)
	if err != nil {
		return err
	}
	name := c.ReleaseName()
	timeout := in.timeout(c)
	deadline := time.Now().Add(timeout)
	desc := fmt.Sprintf("kaic: %s %s, content sha256:%s", lc.chart.Metadata.Name, lc.chart.Metadata.Version, lc.contentHash)

	last, err := lastRelease(cfg, name)
	if err != nil {
		return fmt.Errorf("reading release %s: %w", name, err)
	}
	adopting := false
	if last != nil && !ownership.CreatedBy(last.Labels, in.runID) {
		owner := ownership.Owner(last.Labels)
		rec.Owner = owner
		if !in.adopt[c.Name] {
			rec.PreExisting, rec.Revision = true, last.Version
			return &ForeignReleaseError{Component: c.Name, Release: name, Namespace: ns, Owner: owner, Revision: last.Version, Status: last.Info.Status.String()}
		}
		in.logger.Info("adopting a release this run did not install", "release", name, "namespace", ns, "owner", owner)
		in.steps.Notef("%s: taking over release %s in %s (installed by %s)", c.Name, name, ns, owner)
		rec.Adopted, adopting = true, true
	}
	if !adopting && last != nil && last.Info.Status == rcommon.StatusDeployed && sameChart(last.Info.Description, desc) && sameValues(last.Config, vals) {
		rec.Action, rec.Revision = ActionUnchanged, last.Version
		wctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err := in.waitDeclared(wctx, c, ns); err != nil {
			return in.notReady(ctx, fmt.Sprintf("release %s (unchanged, revision %d)", name, last.Version), timeout, err, manifestObjects(last.Manifest, ns), "")
		}
		return nil
	}
	if last != nil && last.Info.Status.IsPending() {
		if last.Info.Status != rcommon.StatusPendingInstall {
			return fmt.Errorf("release %s is %s, left so by an interrupted run; roll it back or uninstall it first", name, last.Info.Status)
		}
	}
	fresh := last == nil || lastDeployedRevision(cfg, name) == 0
	if last != nil && fresh {
		// A first install that failed or was interrupted: start over.
		in.logger.Info("removing a release that never deployed", "release", name, "status", last.Info.Status)
		if err := in.uninstallHelm(cfg, name, false); err != nil {
			return fmt.Errorf("removing release %s (%s) before installing it again: %w", name, last.Info.Status, err)
		}
	}

	// Discovery may predate CRDs another component has established since:
	// read it again before Helm maps this chart's objects.
	if cl, err := in.target(); err == nil {
		cl.resetMapper()
	}
	// A container whose image cannot be pulled ends the wait early, with
	// the kubelet's reason (see watchPulls).
	outer := ctx
	ctx, stopWatch := context.WithCancelCause(ctx)
	defer stopWatch(nil)
	if cl, err := in.target(); err == nil {
		go watchPulls(ctx, stopWatch, cl.clientset, cfg, name, ns)
	}
	var rel *release.Release
	verb := "install"
	if fresh {
		act := action.NewInstall(cfg)
		act.ReleaseName, act.Namespace, act.CreateNamespace = name, ns, true
		act.WaitStrategy, act.WaitForJobs, act.Timeout = kube.StatusWatcherStrategy, true, timeout
		act.ServerSideApply, act.ForceConflicts = true, true
		act.WaitOptions = waitOptions(in.cluster.mapper)
		act.Description = desc
		act.Labels = ownership.Labels(in.runID)
		var r any
		r, err = act.RunWithContext(ctx, lc.chart, vals)
		rel, _ = r.(*release.Release)
		rec.Action = ActionInstalled
	} else {
		verb = "upgrade"
		act := action.NewUpgrade(cfg)
		act.Namespace = ns
		act.WaitStrategy, act.WaitForJobs, act.Timeout = kube.StatusWatcherStrategy, true, timeout
		act.ServerSideApply, act.ForceConflicts = "true", true
		act.ResetValues, act.MaxHistory = true, maxHistory
		act.WaitOptions = waitOptions(in.cluster.mapper)
		act.Description = desc
		act.Labels = ownership.Labels(in.runID)
		var r any
		r, err = act.RunWithContext(ctx, name, lc.chart, vals)
		rel, _ = r.(*release.Release)
		rec.Action = ActionUpgraded
	}
	if err == nil {
		rec.Revision = rel.Version
		wctx, cancel := context.WithDeadline(ctx, deadline)
		err = in.waitDeclared(wctx, c, ns)
		cancel()
	}
	if err == nil {
		return nil
	}
	var pull *ImagePullError
	if errors.As(context.Cause(ctx), &pull) && outer.Err() == nil {
		err = pull
	}
	ctx = outer
	// Diagnose before rolling back: the rollback removes the evidence.
	var objs []ObjectRef
	if cur, lerr := lastRelease(cfg, name); lerr == nil && cur != nil {
		objs = manifestObjects(cur.Manifest, ns)
	}
	failure := in.notReady(ctx, fmt.Sprintf("%s of release %s (chart %s %s)", verb, name, lc.chart.Metadata.Name, lc.chart.Metadata.Version), timeout, err, objs, "")
	failure.RolledBack = in.rollback(cfg, name, fresh, timeout)
	return failure
}

// rollback undoes a failed install (uninstall) or upgrade (back to the last
// deployed revision) and says what it did.
func (in *Installer) rollback(cfg *action.Configuration, name string, fresh bool, timeout time.Duration) string {
	if fresh {
		if err := in.uninstallHelm(cfg, name, false); err != nil {
			return fmt.Sprintf("uninstalling release %s failed: %v", name, err)
		}
		return fmt.Sprintf("release %s uninstalled", name)
	}
	rev := lastDeployedRevision(cfg, name)
	if rev == 0 {
		return fmt.Sprintf("release %s has no deployed revision to roll back to", name)
	}
	act := action.NewRollback(cfg)
	act.Version = rev
	act.WaitStrategy, act.WaitForJobs, act.Timeout = kube.StatusWatcherStrategy, true, timeout
	act.WaitOptions = waitOptions(in.cluster.mapper)
	act.ServerSideApply, act.ForceConflicts = "true", true
	act.MaxHistory = maxHistory
	act.Description = rollbackDescription(cfg, name, rev)
	if err := act.Run(name); err != nil {
		return fmt.Sprintf("rolling release %s back to revision %d failed: %v", name, rev, err)
	}
	return fmt.Sprintf("release %s rolled back to revision %d", name, rev)
}

// rollbackNote separates the chart description of a revision from the note
// that it is a rollback.
const rollbackNote = "; rolled back to revision "

// rollbackDescription describes the revision a rollback to rev creates: the
// chart description of rev (so that a re-run with rev's chart and values
// finds the release unchanged) and the note that it is a rollback.
func rollbackDescription(cfg *action.Configuration, name string, rev int) string {
	note := fmt.Sprintf("%s%d after a failed upgrade", rollbackNote, rev)
	desc := "kaic: chart unknown"
	if r, err := cfg.Releases.Get(name, rev); err == nil {
		if rel, ok := r.(*release.Release); ok && rel.Info != nil && strings.HasPrefix(rel.Info.Description, "kaic: ") {
			desc, _, _ = strings.Cut(rel.Info.Description, rollbackNote)
		}
	}
	if len(desc)+len(note) > action.MaxDescriptionLength {
		return desc
	}
	return desc + note
}

// sameChart reports whether a release's description (as kaic writes it,
// maybe with a rollback note) names the chart desc describes.
func sameChart(releaseDesc, desc string) bool {
	chartDesc, _, _ := strings.Cut(releaseDesc, rollbackNote)
	return chartDesc == desc
}

// uninstallHelm removes a release; wait makes it wait until the objects are
// gone.
func (in *Installer) uninstallHelm(cfg *action.Configuration, name string, wait bool) error {
	act := action.NewUninstall(cfg)
	act.IgnoreNotFound = true
	act.WaitStrategy = kube.HookOnlyStrategy
	act.Timeout = in.defaultTimeout
	if wait {
		act.WaitStrategy = kube.StatusWatcherStrategy
	}
	_, err := act.Run(name)
	return err
}

// uninstallRelease removes a recorded release when it is the run's: a
// release recorded as pre-existing, or whose labels name another owner
// now, is left alone (with a note).
func (in *Installer) uninstallRelease(_ context.Context, r Record) error {
	if !r.Created() {
		in.steps.Notef("%s: release %s in %s was there before (%s): left alone", r.Component, r.Release, r.Namespace, r.Owner)
		return nil
	}
	cfg, err := in.helmConfig(r.Namespace)
	if err != nil {
		return err
	}
	last, err := lastRelease(cfg, r.Release)
	if err != nil {
		return fmt.Errorf("reading release %s: %w", r.Release, err)
	}
	if last == nil {
		return nil
	}
	if runID := in.recordRunID(r); !ownership.CreatedBy(last.Labels, runID) {
		in.steps.Notef("%s: release %s in %s is labelled as %s's, not run %s's: left alone", r.Component, r.Release, r.Namespace, ownership.Owner(last.Labels), runID)
		return nil
	}
	return in.uninstallHelm(cfg, r.Release, true)
}

// recordRunID is the run a record belongs to: its own run id, else the
// Installer's.
func (in *Installer) recordRunID(r Record) string {
	if r.RunID != "" {
		return r.RunID
	}
	return in.runID
}

// ForeignReleaseError stops the install of a component whose Helm release
// exists but was not installed by this run (no kaic labels, another tool,
// or another kaic run): kaic neither upgrades nor uninstalls it.
type ForeignReleaseError struct {
	Component, Release, Namespace string
	// Owner is who the release's labels name (ownership.Owner).
	Owner    string
	Revision int
	Status   string
}

func (e *ForeignReleaseError) Error() string {
	return fmt.Sprintf("release %s in namespace %s (revision %d, %s) exists and was not installed by this run: its owner is %s. kaic leaves it as it is; uninstall it, or adopt it (--adopt %s) to let kaic take it over",
		e.Release, e.Namespace, e.Revision, e.Status, e.Owner, e.Component)
}
