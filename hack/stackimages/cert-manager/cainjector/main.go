// Command cainjector is cert-manager's CA injector: it copies CA bundles
// from Secrets and Certificates into webhook configurations, APIServices and
// CRD conversion webhooks that ask for them by annotation.
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	cliflag "k8s.io/component-base/cli/flag"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	config "github.com/cert-manager/cert-manager/internal/apis/config/cainjector"
	cainjectorscheme "github.com/cert-manager/cert-manager/internal/apis/config/cainjector/scheme"
	_ "github.com/cert-manager/cert-manager/internal/cainjector/feature" // registers the cainjector's feature gates
	"github.com/cert-manager/cert-manager/kaicstack/internal/cmdutil"
	cmscheme "github.com/cert-manager/cert-manager/pkg/api"
	"github.com/cert-manager/cert-manager/pkg/apis/config/cainjector/v1alpha1"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
)

func main() { cmdutil.Main("cert-manager-cainjector", run) }

func run(ctx context.Context, args []string) error {
	scheme, codecs, err := cainjectorscheme.NewSchemeAndCodecs()
	if err != nil {
		return err
	}
	cfg := &config.CAInjectorConfiguration{}
	fs := pflag.NewFlagSet("cert-manager-cainjector", pflag.ContinueOnError)
	logf.AddFlags(&cfg.Logging, fs)
	fs.StringVar(&cfg.KubeConfig, "kubeconfig", "", "kubeconfig file; in-cluster configuration when empty")
	fs.StringVar(&cfg.Namespace, "namespace", "", "only inject into objects of this namespace")
	fs.BoolVar(&cfg.LeaderElectionConfig.Enabled, "leader-elect", true, "run only while holding the leader lease")
	fs.StringVar(&cfg.LeaderElectionConfig.Namespace, "leader-election-namespace", "", "namespace of the leader lease")
	fs.DurationVar(&cfg.LeaderElectionConfig.LeaseDuration, "leader-election-lease-duration", 0, "leader lease duration")
	fs.DurationVar(&cfg.LeaderElectionConfig.RenewDeadline, "leader-election-renew-deadline", 0, "leader renew deadline")
	fs.DurationVar(&cfg.LeaderElectionConfig.RetryPeriod, "leader-election-retry-period", 0, "leader retry period")
	fs.StringVar(&cfg.MetricsListenAddress, "metrics-listen-address", "", "address of the metrics server (0 disables it)")
	fs.Var(cliflag.NewMapStringBool(&cfg.FeatureGates), "feature-gates", "feature gates, Name=true|false,...")
	if err := cmdutil.Configure(scheme, codecs, &v1alpha1.CAInjectorConfiguration{}, cfg, fs, args); err != nil {
		return err
	}
	if err := logf.ValidateAndApply(&cfg.Logging); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(cfg.FeatureGates); err != nil {
		return fmt.Errorf("feature gates: %w", err)
	}
	log := logf.Log.WithName("cainjector")
	ctrl.SetLogger(log)

	objects := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(objects))
	utilruntime.Must(admissionregistrationv1.AddToScheme(objects))
	utilruntime.Must(apiregistrationv1.AddToScheme(objects))
	utilruntime.Must(apiextensionsv1.AddToScheme(objects))
	utilruntime.Must(cmscheme.AddToScheme(objects))

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	// The injectors name their field manager after the user agent.
	restConfig = util.RestConfigWithUserAgent(restConfig, "cainjector")
	le := cfg.LeaderElectionConfig
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        objects,
		Cache:                         cacheOptions(cfg.Namespace),
		LeaderElection:                le.Enabled,
		LeaderElectionNamespace:       le.Namespace,
		LeaderElectionID:              "cert-manager-cainjector-leader-election",
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &le.LeaseDuration,
		RenewDeadline:                 &le.RenewDeadline,
		RetryPeriod:                   &le.RetryPeriod,
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsListenAddress},
		GracefulShutdownTimeout:       new(5 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	enabled := cfg.EnableInjectableConfig
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    cfg.Namespace,
		IgnoreNamespaces:             cfg.IgnoreNamespaces,
		EnableCertificatesDataSource: cfg.EnableDataSourceConfig.Certificates,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   enabled.MutatingWebhookConfigurations,
			cainjector.ValidatingWebhookConfigurationName: enabled.ValidatingWebhookConfigurations,
			cainjector.APIServiceName:                     enabled.APIServices,
			cainjector.CustomResourceDefinitionName:       enabled.CustomResourceDefinitions,
		},
	})
	if err != nil {
		return fmt.Errorf("registering the injectors: %w", err)
	}
	return mgr.Start(logf.NewContext(ctx, log))
}

// cacheOptions limits the cache to one namespace when the injector is.
func cacheOptions(namespace string) cache.Options {
	if namespace == "" {
		return cache.Options{}
	}
	return cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}}
}
