package stack

import (
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
)

// PodReady is how readiness tells a ready pod.
var PodReady = podReady

// SetWebhookRetryPause sets the pause between attempts while an admission
// webhook does not answer, returning a func that restores it.
func SetWebhookRetryPause(d time.Duration) func() {
	old := webhookRetryPause
	webhookRetryPause = d
	return func() { webhookRetryPause = old }
}

// InstallWithoutKaic installs chartDir as release name in ns with the Helm
// SDK alone, as another tool would: no kaic labels, no kaic description.
// With wait > 0 it waits that long for the objects to be ready (and the
// release is failed if they are not).
func InstallWithoutKaic(in *Installer, chartDir, name, ns string, vals map[string]any, wait time.Duration) error {
	cfg, err := in.helmConfig(ns)
	if err != nil {
		return err
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return err
	}
	act := action.NewInstall(cfg)
	act.ReleaseName, act.Namespace = name, ns
	act.WaitStrategy = kube.HookOnlyStrategy
	if wait > 0 {
		act.WaitStrategy, act.Timeout = kube.StatusWatcherStrategy, wait
		act.WaitOptions = waitOptions(in.cluster.mapper)
	}
	_, err = act.Run(chrt, vals)
	return err
}

// SetPullGrace sets how long an image may fail to pull before a wait ends,
// returning a func that restores it.
func SetPullGrace(d time.Duration) func() {
	old := pullGrace
	pullGrace = d
	return func() { pullGrace = old }
}
