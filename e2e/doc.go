// Package e2e holds kaic's end-to-end tests (build tag e2e): they drive the
// real kaic binary against real clusters.
//
// The offline suite (`make e2e-offline`) creates a kind cluster from a node
// image built on this machine (hack/kindnode), with the profile overlay
// e2e/testdata/kind-dra-offline.yaml, and tears it down again; then again
// with e2e/testdata/kind-device-plugin-offline.yaml, whose accelerators a
// kubelet device plugin allocates (TestOfflineDevicePlugin). It runs only
// when KAIC_E2E_OFFLINE=1, which the make target sets after building its
// inputs.
package e2e
