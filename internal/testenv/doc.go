// Package testenv runs a real Kubernetes control plane on loopback for
// kaic's integration tests: etcd and kube-apiserver always, and on request
// kube-controller-manager, kube-scheduler and kwok with simulated nodes that
// can carry fake DRA accelerators (one ResourceSlice per node).
//
// Binaries come from the cache that `make testbin` fills
// (hack/testbin/build.sh); nothing is downloaded at test time. The directory
// is $KAIC_TESTBIN_DIR, else ${XDG_CACHE_HOME:-~/.cache}/kaic/testbin/<version>
// with the version read from hack/testbin/kubernetes/go.mod. When binaries
// are missing, [Shared] and [New] skip the test with one line naming the
// command that builds them; with CI=true they fail it instead.
//
// Typical use, one control plane per test package:
//
//	func TestMain(m *testing.M) {
//		testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 4))
//	}
//
//	func TestSomething(t *testing.T) {
//		env := testenv.Shared(t) // started on first use, stopped after m.Run
//		cs := env.Clientset()
//		...
//	}
//
// # Why not controller-runtime's envtest
//
// envtest starts etcd and kube-apiserver only; kaic also needs the
// controller manager, the scheduler and kwok, so the process handling would
// exist here anyway. Owning it lets every component run in its own process
// group with a parent-death signal, so no process outlives a test binary
// that panics or times out, and it avoids pulling controller-runtime into
// the module for a few hundred lines of exec and polling.
//
// Operators some checks' tests need (Kueue, KubeRay) are binaries that
// `make testbin-operators` builds into the same directory. An [Operator]
// describes one: it finds the binary and the module its manifests come
// from, starts it once per test binary as a process of the environment
// (logged and stopped like a component) and [ApplyManifests] installs its
// CRDs and webhooks; [NewWebhookCerts] makes the certificates it serves
// with.
//
// Each component logs to <dir>/logs/<component>.log in the environment's
// temporary directory. A start failure keeps that directory and quotes the
// tail of the failing component's log in the error; [Main] also keeps it
// when tests fail, or always with KAIC_TESTENV_KEEP=1.
package testenv
