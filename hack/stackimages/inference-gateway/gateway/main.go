// Command inference-gateway is a small Gateway API implementation for
// kaic's offline lab, where Envoy Gateway's data plane (Envoy, a C++
// program) cannot be built: one proxy serving every Gateway of its
// GatewayClasses on one HTTP port, routing by HTTPRoute host, path and
// header matches and weights to Services and, for InferencePool backends
// (Gateway API Inference Extension), to the endpoint the pool's endpoint
// picker chooses over Envoy's ext_proc protocol. It writes the statuses a
// Gateway API controller writes: GatewayClass Accepted, Gateway Programmed
// with the proxy Service's cluster IP as its address, HTTPRoute Accepted
// and ResolvedRefs, InferencePool parents Accepted and ResolvedRefs.
//
// It stands in for Envoy Gateway's InferencePool support in the lab and is
// not meant for anything else: no TLS listeners, no cross-namespace
// backends, rules taken in route order rather than by precedence.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	var (
		controllerName = flag.String("controller-name", "kaic.dev/inference-gateway", "controllerName of the GatewayClasses this serves")
		addr           = flag.String("addr", ":8080", "address the proxy listens on")
		listenerPort   = flag.Int("listener-port", 80, "the port of the proxy's Service: the one HTTP listener port Gateways may ask for")
		healthAddr     = flag.String("health-addr", ":8081", "address of /healthz")
		serviceName    = flag.String("service-name", "inference-gateway", "the proxy's Service, whose cluster IP every Gateway gets")
		serviceNS      = flag.String("service-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the proxy's Service")
		clusterDomain  = flag.String("cluster-domain", "cluster.local", "cluster DNS domain")
		kubeconfig     = flag.String("kubeconfig", "", "kubeconfig (default: in-cluster)")
		verbose        = flag.Bool("v", false, "log every routed request")
	)
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(*controllerName, *addr, *healthAddr, *listenerPort, *serviceNS, *serviceName, *clusterDomain, *kubeconfig, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func run(controllerName, addr, healthAddr string, listenerPort int, serviceNS, serviceName, clusterDomain, kubeconfig string, log *slog.Logger) error {
	if serviceNS == "" {
		return errors.New("--service-namespace (or POD_NAMESPACE) is required")
	}
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	p := newProxy(func(ctx context.Context, pl pool) ([]string, error) { return readyMembers(ctx, kube, pl) }, clusterDomain, log)
	c := &controller{dyn: dyn, name: controllerName, listenPort: listenerPort, serviceNS: serviceNS, serviceName: serviceName, clusterDomain: clusterDomain, proxy: p, log: log, now: time.Now}
	srv := &http.Server{Addr: addr, Handler: p, ReadHeaderTimeout: 10 * time.Second}
	health := &http.Server{Addr: healthAddr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})}
	errc := make(chan error, 3)
	go func() { errc <- c.run(ctx) }()
	go func() { errc <- srv.ListenAndServe() }()
	go func() { errc <- health.ListenAndServe() }()
	log.Info("serving", "addr", addr, "controllerName", controllerName)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	_ = health.Shutdown(shutdown)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// readyMembers lists the pool's ready pods as "ip:port" on its first
// target port.
func readyMembers(ctx context.Context, kube kubernetes.Interface, pl pool) ([]string, error) {
	pods, err := kube.CoreV1().Pods(pl.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(pl.Selector).String()})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of InferencePool %s/%s: %w", pl.Namespace, pl.Name, err)
	}
	var out []string
	for _, pod := range pods.Items {
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			continue
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out = append(out, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(pl.TargetPort)))
			}
		}
	}
	return out, nil
}
