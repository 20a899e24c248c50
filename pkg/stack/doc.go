// Package stack installs a profile's stack components on a cluster and
// removes them again: Helm releases through the Helm v4 SDK (charts from an
// OCI registry, a classic chart repository, a local directory or archive, or
// embedded in kaic) and plain manifests applied with server-side apply under
// the field manager "kaic".
//
// Components install in dependency order; independent ones run
// concurrently, bounded by [WithParallel]. A component counts as installed
// when Helm's kstatus watcher reports its objects ready within the
// component's timeout and its declared readiness conditions hold (CRDs
// Established, Deployments Available, DaemonSets ready on every node,
// APIServices Available, webhook services with a ready endpoint, enough
// ready pods among those a label selector chooses, such as the pods an
// operator starts from the component's custom resources). A custom
// resource whose status kstatus cannot read (one that does not follow the
// Kubernetes status conventions) is not waited for; one with a standard
// status is. A component that fails is rolled back (a new release is uninstalled, an
// upgrade goes back to the previous revision), the components depending on
// it are not started, and the error names it with the state and the last
// events of its unready objects.
//
// Everything downloaded is verified before anything of its component is
// applied: chart archives against their pinned digest (an OCI chart pinned
// by digest is then kept in the content-addressed download cache and needs
// no registry again), manifest URLs against their sha256, and Go module
// zips, fetched through the module proxy protocol ([WithGoProxy]), against
// their go.sum hash.
//
// Values are merged in this order, later winning: the chart's own
// values.yaml, the component's default values (built-in stack definition),
// the profile's overrides, then --set overrides ([ParseSet]).
//
// Re-running is idempotent: a release whose chart digest and values are
// unchanged is left at its revision; a changed one is upgraded with
// server-side apply, forcing conflicts on the fields kaic owns.
//
// An Installer touches only what its run created ([WithRunID]; see package
// ownership). Its Helm releases carry the run's labels; a release of a
// component's name that the run did not install stops that component with
// a [*ForeignReleaseError] and is neither upgraded nor uninstalled, unless
// the component is adopted ([WithAdopt]). An object of a manifests
// component that exists without the run's labels is recorded as
// pre-existing and left as it is; the objects the run creates carry its
// labels. [Installer.Uninstall] removes only releases and objects whose
// records and live labels say the run created them.
package stack
