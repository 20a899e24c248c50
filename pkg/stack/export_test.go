package stack

import (
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
)

// SetWebhookRetryPause sets the pause between attempts while an admission
// webhook does not answer, returning a func that restores it.
func SetWebhookRetryPause(d time.Duration) func() {
	old := webhookRetryPause
	webhookRetryPause = d
	return func() { webhookRetryPause = old }
}

// WebhookUnavailable exposes webhookUnavailable to the tests.
var WebhookUnavailable = webhookUnavailable

// InstallWithoutKaic installs chartDir as release name in ns with the Helm
// SDK alone, as another tool would: no kaic labels, no kaic description.
func InstallWithoutKaic(in *Installer, chartDir, name, ns string, vals map[string]any) error {
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
	_, err = act.Run(chrt, vals)
	return err
}
