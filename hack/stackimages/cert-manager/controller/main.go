// Command controller is cert-manager's controller: it reconciles Issuers,
// Certificates, CertificateRequests and ACME orders, while it holds the
// leader lease.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	cliflag "k8s.io/component-base/cli/flag"

	config "github.com/cert-manager/cert-manager/internal/apis/config/controller"
	controllerscheme "github.com/cert-manager/cert-manager/internal/apis/config/controller/scheme"
	defaults "github.com/cert-manager/cert-manager/internal/apis/config/controller/v1alpha1"
	_ "github.com/cert-manager/cert-manager/internal/controller/feature" // registers the controller's feature gates
	"github.com/cert-manager/cert-manager/internal/pem"
	"github.com/cert-manager/cert-manager/kaicstack/internal/cmdutil"
	"github.com/cert-manager/cert-manager/pkg/apis/config/controller/v1alpha1"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme" // the issuer types register themselves
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/venafi"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
)

func main() { cmdutil.Main("cert-manager-controller", run) }

func run(ctx context.Context, args []string) error {
	scheme, codecs, err := controllerscheme.NewSchemeAndCodecs()
	if err != nil {
		return err
	}
	cfg := &config.ControllerConfiguration{}
	fs := pflag.NewFlagSet("cert-manager-controller", pflag.ContinueOnError)
	logf.AddFlags(&cfg.Logging, fs)
	fs.StringVar(&cfg.KubeConfig, "kubeconfig", "", "kubeconfig file; in-cluster configuration when empty")
	fs.StringVar(&cfg.Namespace, "namespace", "", "only reconcile objects of this namespace")
	fs.StringVar(&cfg.ClusterResourceNamespace, "cluster-resource-namespace", "", "namespace of the Secrets ClusterIssuers refer to")
	le := &cfg.LeaderElectionConfig
	fs.BoolVar(&le.Enabled, "leader-elect", true, "run only while holding the leader lease")
	fs.StringVar(&le.Namespace, "leader-election-namespace", "", "namespace of the leader lease")
	fs.DurationVar(&le.LeaseDuration, "leader-election-lease-duration", 0, "leader lease duration")
	fs.DurationVar(&le.RenewDeadline, "leader-election-renew-deadline", 0, "leader renew deadline")
	fs.DurationVar(&le.RetryPeriod, "leader-election-retry-period", 0, "leader retry period")
	fs.StringSliceVar(&cfg.Controllers, "controllers", nil, "controllers to run: '*' for the default set, 'name' to add one, '-name' to drop one")
	fs.StringVar(&cfg.ACMEHTTP01Config.SolverImage, "acme-http01-solver-image", "", "image of ACME HTTP-01 solver pods")
	fs.StringVar(&cfg.ACMEHTTP01Config.SolverRuntimeClassName, "acme-http01-solver-runtime-class-name", "", "runtime class of ACME HTTP-01 solver pods")
	fs.Var(cliflag.NewMapStringString(&cfg.ACMEHTTP01Config.SolverExtraLabels), "acme-http01-solver-extra-labels", "extra labels of ACME HTTP-01 solver pods")
	fs.IntVar(&cfg.MaxConcurrentChallenges, "max-concurrent-challenges", 0, "ACME challenges processed at once")
	fs.BoolVar(&cfg.EnableCertificateOwnerRef, "enable-certificate-owner-ref", false, "make Certificates owners of their Secrets")
	fs.BoolVar(&cfg.ACMEDNS01Config.RecursiveNameserversOnly, "dns01-recursive-nameservers-only", false, "check DNS-01 propagation with the recursive nameservers only")
	fs.StringSliceVar(&cfg.ACMEDNS01Config.RecursiveNameservers, "dns01-recursive-nameservers", nil, "recursive nameservers for DNS-01 checks")
	fs.StringVar(&cfg.IngressShimConfig.DefaultIssuerName, "default-issuer-name", "", "issuer of annotated Ingresses that name none")
	fs.StringVar(&cfg.IngressShimConfig.DefaultIssuerKind, "default-issuer-kind", "", "kind of that issuer")
	fs.StringVar(&cfg.IngressShimConfig.DefaultIssuerGroup, "default-issuer-group", "", "group of that issuer")
	fs.BoolVar(&cfg.GatewayAPIConfig.Enabled, "enable-gateway-api", false, "reconcile Gateway API resources")
	fs.StringVar(&cfg.MetricsListenAddress, "metrics-listen-address", "", "address of the metrics server (0 disables it)")
	fs.StringVar(&cfg.HealthzListenAddress, "healthz-listen-address", "", "address of the /livez server")
	fs.Var(cliflag.NewMapStringBool(&cfg.FeatureGates), "feature-gates", "feature gates, Name=true|false,...")
	if err := cmdutil.Configure(scheme, codecs, &v1alpha1.ControllerConfiguration{}, cfg, fs, args); err != nil {
		return err
	}
	if err := logf.ValidateAndApply(&cfg.Logging); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(cfg.FeatureGates); err != nil {
		return fmt.Errorf("feature gates: %w", err)
	}
	enabled, err := enabledControllers(cfg.Controllers)
	if err != nil {
		return err
	}
	pem.SetGlobalSizeLimits(pem.SizeLimits{
		MaxCertificateSize: cfg.PEMSizeLimitsConfig.MaxCertificateSize,
		MaxPrivateKeySize:  cfg.PEMSizeLimitsConfig.MaxPrivateKeySize,
		MaxChainLength:     cfg.PEMSizeLimitsConfig.MaxChainLength,
		MaxBundleSize:      cfg.PEMSizeLimitsConfig.MaxBundleSize,
	})
	log := logf.Log.WithName("controller")
	ctx = logf.NewContext(ctx, log)

	opts, err := contextOptions(cfg)
	if err != nil {
		return err
	}
	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}
	cmctx, err := factory.Build()
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}

	g, ctx := errgroup.WithContext(ctx)
	if cfg.MetricsListenAddress != "0" && cfg.MetricsListenAddress != "" {
		ln, err := net.Listen("tcp", cfg.MetricsListenAddress)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := cmctx.Metrics.NewServer(ln)
		g.Go(func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) && err.Error() != "http: Server closed" {
				return fmt.Errorf("metrics server: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdown) //nolint:contextcheck // the parent is done
		})
	}
	health := healthz.NewServer(le.HealthzTimeout)
	if cfg.HealthzListenAddress != "" {
		ln, err := net.Listen("tcp", cfg.HealthzListenAddress)
		if err != nil {
			return fmt.Errorf("healthz listener: %w", err)
		}
		g.Go(func() error { return health.Start(ctx, ln) })
	}

	runControllers := func(ctx context.Context) error {
		return startControllers(ctx, factory, cmctx, enabled, cfg.NumberOfConcurrentWorkers, cfg.GatewayAPIConfig.Enabled)
	}
	if !le.Enabled {
		g.Go(func() error { return runControllers(ctx) })
		return g.Wait()
	}
	g.Go(func() error { return leaderElect(ctx, cmctx.Client, le, health, runControllers) })
	return g.Wait()
}

// enabledControllers resolves --controllers against the default and the
// known sets.
func enabledControllers(names []string) ([]string, error) {
	if len(names) == 0 {
		names = []string{"*"}
	}
	out := sets.New[string]()
	dropped := sets.New[string]()
	for _, n := range names {
		switch {
		case n == "*":
			out.Insert(defaults.DefaultEnabledControllers...)
		case strings.HasPrefix(n, "-"):
			dropped.Insert(strings.TrimPrefix(n, "-"))
		default:
			out.Insert(n)
		}
	}
	out = out.Difference(dropped)
	for _, n := range sets.List(out) {
		if !slices.Contains(defaults.AllControllers, n) {
			return nil, fmt.Errorf("unknown controller %q (known: %s)", n, strings.Join(defaults.AllControllers, ", "))
		}
	}
	return sets.List(out), nil
}

// contextOptions maps the configuration onto the controller context's
// options.
func contextOptions(cfg *config.ControllerConfiguration) (controller.ContextOptions, error) {
	h := cfg.ACMEHTTP01Config
	quantities := map[string]*resource.Quantity{}
	for _, q := range []struct{ name, value string }{
		{"acme-http01-solver-resource-request-cpu", h.SolverResourceRequestCPU},
		{"acme-http01-solver-resource-request-memory", h.SolverResourceRequestMemory},
		{"acme-http01-solver-resource-limits-cpu", h.SolverResourceLimitsCPU},
		{"acme-http01-solver-resource-limits-memory", h.SolverResourceLimitsMemory},
	} {
		v, err := resource.ParseQuantity(q.value)
		if err != nil {
			return controller.ContextOptions{}, fmt.Errorf("%s %q: %w", q.name, q.value, err)
		}
		quantities[q.name] = &v
	}
	ns := cfg.ACMEDNS01Config.RecursiveNameservers
	opts := controller.ContextOptions{
		APIServerHost:      cfg.APIServerHost,
		Kubeconfig:         cfg.KubeConfig,
		KubernetesAPIQPS:   cfg.KubernetesAPIQPS,
		KubernetesAPIBurst: cfg.KubernetesAPIBurst,
		Namespace:          cfg.Namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        cfg.ClusterResourceNamespace,
			ClusterIssuerAmbientCredentials: cfg.ClusterIssuerAmbientCredentials,
			IssuerAmbientCredentials:        cfg.IssuerAmbientCredentials,
		},
		ACMEOptions: controller.ACMEOptions{
			HTTP01SolverImage:                 h.SolverImage,
			HTTP01SolverResourceRequestCPU:    *quantities["acme-http01-solver-resource-request-cpu"],
			HTTP01SolverResourceRequestMemory: *quantities["acme-http01-solver-resource-request-memory"],
			HTTP01SolverResourceLimitsCPU:     *quantities["acme-http01-solver-resource-limits-cpu"],
			HTTP01SolverResourceLimitsMemory:  *quantities["acme-http01-solver-resource-limits-memory"],
			ACMEHTTP01SolverRunAsNonRoot:      h.SolverRunAsNonRoot,
			HTTP01SolverRuntimeClassName:      h.SolverRuntimeClassName,
			HTTP01SolverNameservers:           h.SolverNameservers,
			HTTP01SolverExtraLabels:           h.SolverExtraLabels,
			DNS01CheckAuthoritative:           !cfg.ACMEDNS01Config.RecursiveNameserversOnly,
			DNS01Nameservers:                  ns,
			DNS01CheckRetryPeriod:             cfg.ACMEDNS01Config.CheckRetryPeriod,
		},
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerName:                 cfg.IngressShimConfig.DefaultIssuerName,
			DefaultIssuerKind:                 cfg.IngressShimConfig.DefaultIssuerKind,
			DefaultIssuerGroup:                cfg.IngressShimConfig.DefaultIssuerGroup,
			DefaultAutoCertificateAnnotations: cfg.IngressShimConfig.DefaultAutoCertificateAnnotations,
			ExtraCertificateAnnotations:       cfg.IngressShimConfig.ExtraCertificateAnnotations,
			GatewayAPIExtraProtocols:          sets.New(cfg.GatewayAPIConfig.ExtraProtocols...),
		},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           cfg.EnableCertificateOwnerRef,
			CopiedAnnotationPrefixes:                 cfg.CopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: cfg.CertificateRequestMinimumBackoffDuration,
			CertificateRequestMaximumBackoffDuration: cfg.CertificateRequestMaximumBackoffDuration,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: cfg.MaxConcurrentChallenges},
		ConfigOptions: controller.ConfigOptions{
			EnableGatewayAPI:            cfg.GatewayAPIConfig.Enabled,
			EnableGatewayAPIListenerSet: cfg.GatewayAPIConfig.EnableListenerSet,
		},
	}
	return opts, nil
}

// startControllers constructs the enabled controllers (which registers
// their informers), starts and syncs the informers, then runs the
// controllers until ctx ends.
func startControllers(ctx context.Context, factory *controller.ContextFactory, cmctx *controller.Context, names []string, workers int, gatewayAPI bool) error {
	log := logf.FromContext(ctx)
	known := controller.Known()
	var run []controller.Interface
	for _, n := range names {
		fn, ok := known[n]
		if !ok {
			return fmt.Errorf("controller %s is not registered", n)
		}
		iface, err := fn(factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", n, err)
		}
		run = append(run, iface)
		log.V(logf.InfoLevel).Info("starting controller", "controller", n)
	}
	cmctx.KubeSharedInformerFactory.Start(ctx.Done())
	cmctx.SharedInformerFactory.Start(ctx.Done())
	cmctx.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	if gatewayAPI {
		cmctx.GWShared.Start(ctx.Done())
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(run))
	for i, c := range run {
		wg.Go(func() {
			if err := c.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", names[i], err)
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// leaderElect runs fn while holding the controller's lease; losing the
// lease ends the process, as the controllers cannot be stopped cleanly.
func leaderElect(ctx context.Context, client kubernetes.Interface, le *config.LeaderElectionConfig, health *healthz.Server, fn func(context.Context) error) error {
	id, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("leader election identity: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1ObjectMeta(le.Namespace),
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id + "-external-cert-manager-controller"},
	}
	result := make(chan error, 1)
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        health.LeaderHealthzAdaptor,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { result <- fn(ctx) },
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					logf.FromContext(ctx).Info("leader lease lost")
					os.Exit(1)
				}
			},
		},
	})
	select {
	case err := <-result:
		return err
	default:
		return nil
	}
}

func metav1ObjectMeta(namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: "cert-manager-controller"}
}
