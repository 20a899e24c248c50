package stack

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// cluster holds the clients of the target cluster, shared by every
// component.
type cluster struct {
	raw       clientcmdapi.Config
	context   string
	config    *rest.Config
	clientset kubernetes.Interface
	dynamic   dynamic.Interface
	discovery discovery.CachedDiscoveryInterface
	mapper    *restmapper.DeferredDiscoveryRESTMapper
	// mapperMu serialises resets of the discovery cache.
	mapperMu sync.Mutex
}

func newCluster(kubeconfig []byte, context string) (*cluster, error) {
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cc := clientcmd.NewNonInteractiveClientConfig(*raw, context, &clientcmd.ConfigOverrides{CurrentContext: context}, nil)
	config, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	// Charts apply dozens of objects and the waiters list and watch them:
	// the client-go defaults (5 QPS) would throttle a stack install.
	config.QPS, config.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, err
	}
	cached := memory.NewMemCacheClient(dc)
	return &cluster{
		raw:       *raw,
		context:   context,
		config:    config,
		clientset: cs,
		dynamic:   dyn,
		discovery: cached,
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(cached),
	}, nil
}

// resetMapper forgets cached discovery, after CRDs were added.
func (c *cluster) resetMapper() {
	c.mapperMu.Lock()
	defer c.mapperMu.Unlock()
	c.mapper.Reset()
}

// getter returns a Helm RESTClientGetter whose default namespace is ns.
func (c *cluster) getter(ns string) *restGetter {
	return &restGetter{cluster: c, namespace: ns}
}

// restGetter implements genericclioptions.RESTClientGetter over cluster,
// with a namespace of its own.
type restGetter struct {
	cluster   *cluster
	namespace string
}

func (g *restGetter) ToRESTConfig() (*rest.Config, error) {
	return rest.CopyConfig(g.cluster.config), nil
}

func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.cluster.discovery, nil
}

func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.cluster.mapper, nil }

func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	overrides := &clientcmd.ConfigOverrides{CurrentContext: g.cluster.context}
	overrides.Context.Namespace = g.namespace
	return clientcmd.NewNonInteractiveClientConfig(g.cluster.raw, g.cluster.context, overrides, nil)
}
