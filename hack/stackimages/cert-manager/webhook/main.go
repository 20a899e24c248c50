// Command webhook is cert-manager's admission webhook: validation,
// defaulting and conversion of cert-manager resources, served with a
// certificate signed by a CA the webhook keeps in a Secret.
package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"

	config "github.com/cert-manager/cert-manager/internal/apis/config/webhook"
	webhookscheme "github.com/cert-manager/cert-manager/internal/apis/config/webhook/scheme"
	cmwebhook "github.com/cert-manager/cert-manager/internal/webhook"
	_ "github.com/cert-manager/cert-manager/internal/webhook/feature" // registers the webhook's feature gates
	"github.com/cert-manager/cert-manager/kaicstack/internal/cmdutil"
	"github.com/cert-manager/cert-manager/pkg/apis/config/webhook/v1alpha1"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
)

func main() { cmdutil.Main("cert-manager-webhook", run) }

func run(ctx context.Context, args []string) error {
	scheme, codecs, err := webhookscheme.NewSchemeAndCodecs()
	if err != nil {
		return err
	}
	cfg := &config.WebhookConfiguration{}
	fs := pflag.NewFlagSet("cert-manager-webhook", pflag.ContinueOnError)
	logf.AddFlags(&cfg.Logging, fs)
	fs.Int32Var(&cfg.SecurePort, "secure-port", 0, "port of the TLS server the API server calls")
	fs.Int32Var(&cfg.HealthzPort, "healthz-port", 0, "port of the plain HTTP health endpoints")
	fs.StringVar(&cfg.TLSConfig.Dynamic.SecretNamespace, "dynamic-serving-ca-secret-namespace", "", "namespace of the Secret holding the serving CA")
	fs.StringVar(&cfg.TLSConfig.Dynamic.SecretName, "dynamic-serving-ca-secret-name", "", "name of the Secret holding the serving CA")
	fs.StringSliceVar(&cfg.TLSConfig.Dynamic.DNSNames, "dynamic-serving-dns-names", nil, "DNS names of the serving certificate")
	fs.StringVar(&cfg.TLSConfig.Filesystem.CertFile, "tls-cert-file", "", "serving certificate file, instead of a dynamic one")
	fs.StringVar(&cfg.TLSConfig.Filesystem.KeyFile, "tls-private-key-file", "", "serving key file, instead of a dynamic one")
	fs.StringVar(&cfg.MetricsListenAddress, "metrics-listen-address", "", "address of the metrics server (0 disables it)")
	fs.BoolVar(&cfg.EnableClientVerification, "enable-client-verification", false, "verify the client certificate of callers")
	fs.StringVar(&cfg.ClientCAPath, "client-ca-path", "", "CA bundle that client certificates must chain to")
	fs.StringSliceVar(&cfg.ClientCertificateSubjects, "client-subject-names", nil, "subjects a client certificate may carry")
	fs.Var(cliflag.NewMapStringBool(&cfg.FeatureGates), "feature-gates", "feature gates, Name=true|false,...")
	if err := cmdutil.Configure(scheme, codecs, &v1alpha1.WebhookConfiguration{}, cfg, fs, args); err != nil {
		return err
	}
	if err := logf.ValidateAndApply(&cfg.Logging); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(cfg.FeatureGates); err != nil {
		return fmt.Errorf("feature gates: %w", err)
	}
	log := logf.Log.WithName("webhook")
	srv, err := cmwebhook.NewCertManagerWebhookServer(log, *cfg)
	if err != nil {
		return err
	}
	return srv.Run(logf.NewContext(ctx, log))
}
