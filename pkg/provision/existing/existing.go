// Package existing adopts a running cluster from a kubeconfig without
// changing it: it waits for the API server, reports what the checks will
// find (server version, the version of resource.k8s.io they will use,
// missing permissions) and writes
// a kubeconfig holding only the adopted context into the run directory.
package existing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// Name is the backend's name in profiles (spec.cluster.backend).
const Name = profile.BackendExisting

// Provisioner adopts an existing cluster.
type Provisioner struct {
	// Kubeconfig is the kubeconfig file; empty uses $KUBECONFIG or
	// ~/.kube/config like kubectl.
	Kubeconfig string
	// Context is the context to adopt; empty uses the current context.
	Context string
	// KubernetesVersion is the version the profile expects.
	KubernetesVersion string
	// WaitTimeout bounds how long to wait for the API server (default 2m).
	WaitTimeout time.Duration
}

var _ provision.Provisioner = (*Provisioner)(nil)

// Permission is one thing the checks need to be allowed to do.
type Permission struct {
	Verb, Group, Resource, Subresource string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// RequiredPermissions are what kaic's checks do in a cluster.
var RequiredPermissions = []Permission{
	{Verb: "create", Resource: "namespaces"},
	{Verb: "delete", Resource: "namespaces"},
	{Verb: "list", Resource: "nodes"},
	{Verb: "create", Resource: "pods"},
	{Verb: "get", Resource: "pods", Subresource: "log"},
	{Verb: "list", Resource: "events"},
	{Verb: "create", Resource: "services"},
	{Verb: "create", Group: "batch", Resource: "jobs"},
	{Verb: "create", Group: "autoscaling", Resource: "horizontalpodautoscalers"},
	{Verb: "list", Group: "resource.k8s.io", Resource: "resourceslices"},
	{Verb: "get", Group: "resource.k8s.io", Resource: "deviceclasses"},
	{Verb: "create", Group: "resource.k8s.io", Resource: "resourceclaimtemplates"},
	{Verb: "create", Group: "resource.k8s.io", Resource: "resourceclaims"},
	{Verb: "get", Group: "apiregistration.k8s.io", Resource: "apiservices"},
}

// Create adopts the cluster: nothing in it is changed.
func (p *Provisioner) Create(ctx context.Context, paths provision.Paths, r progress.Steps) (provision.Record, error) {
	rec := provision.Record{provision.KeyBackend: string(Name), provision.KeyCreated: "false"}
	raw, contextName, err := p.loadConfig()
	if err != nil {
		return rec, err
	}
	rec[provision.KeyContext] = contextName
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{CurrentContext: contextName}).ClientConfig()
	if err != nil {
		return rec, fmt.Errorf("kubeconfig context %s: %w", contextName, err)
	}
	rec[provision.KeyClusterName] = hostOf(cfg.Host)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return rec, err
	}
	step := r.StartStep("waiting for the API server at " + cfg.Host)
	serverVersion, err := p.waitForServer(ctx, client)
	step.Done(err)
	if err != nil {
		return rec, err
	}
	r.Notef("server version %s", serverVersion)
	if want, err := version.ParseGeneric(p.KubernetesVersion); err == nil {
		if got, err := version.ParseGeneric(serverVersion); err == nil && (got.Major() != want.Major() || got.Minor() != want.Minor()) {
			r.Notef("warning: the profile expects Kubernetes %s but the server runs %s: the evidence would not be for the profile's conformance version", p.KubernetesVersion, serverVersion)
		}
	}
	switch api, err := draapi.Discover(client.Discovery()); {
	case err != nil:
		r.Notef("warning: could not read API discovery: %v", err)
	case api.Err() != nil:
		r.Notef("warning: %v: the DRA checks will fail", api.Err())
	case api.Version != draapi.V1:
		r.Notef("warning: resource.k8s.io/v1 is not served (served: %s): the DRA checks will use %s", api.ServedList(), api.Version)
	}
	missing, err := MissingPermissions(ctx, client, RequiredPermissions)
	if err != nil {
		r.Notef("warning: could not review permissions: %v", err)
	} else if len(missing) > 0 {
		names := make([]string, len(missing))
		for i, m := range missing {
			names[i] = m.String()
		}
		r.Notef("warning: this identity may not: %s", strings.Join(names, ", "))
	}
	path := paths.Kubeconfig
	if err := writeContext(raw, contextName, path); err != nil {
		return rec, err
	}
	rec[provision.KeyKubeconfig] = path
	return rec, nil
}

// loadConfig reads the kubeconfig and settles the context to adopt.
func (p *Provisioner) loadConfig() (*clientcmdapi.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if p.Kubeconfig != "" {
		rules.ExplicitPath = p.Kubeconfig
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, "", fmt.Errorf("reading kubeconfig: %w", err)
	}
	name := p.Context
	if name == "" {
		name = raw.CurrentContext
	}
	if name == "" {
		return nil, "", errors.New("the kubeconfig has no current context: pass --context")
	}
	if _, ok := raw.Contexts[name]; !ok {
		return nil, "", fmt.Errorf("the kubeconfig has no context %q", name)
	}
	return raw, name, nil
}

// waitForServer polls /version with backoff until it answers, the context
// ends or WaitTimeout passes.
func (p *Provisioner) waitForServer(ctx context.Context, client kubernetes.Interface) (string, error) {
	timeout := p.WaitTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 500 * time.Millisecond
	attempts := 0
	for {
		attempts++
		v, err := client.Discovery().ServerVersion()
		if err == nil {
			return v.GitVersion, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", fmt.Errorf("API server did not answer within %s (%d attempts): %w", timeout, attempts, err)
			}
			return "", fmt.Errorf("waiting for the API server: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// MissingPermissions asks the API server, with SelfSubjectAccessReviews,
// which of perms the current identity lacks.
func MissingPermissions(ctx context.Context, client kubernetes.Interface, perms []Permission) ([]Permission, error) {
	var missing []Permission
	for _, perm := range perms {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: perm.Verb, Group: perm.Group, Resource: perm.Resource, Subresource: perm.Subresource},
		}}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		if !got.Status.Allowed {
			missing = append(missing, perm)
		}
	}
	return missing, nil
}

// writeContext writes a kubeconfig holding only the named context, its
// cluster and its user, readable by the owner only.
func writeContext(raw *clientcmdapi.Config, contextName, path string) error {
	cfg := raw.DeepCopy()
	cfg.CurrentContext = contextName
	if err := clientcmdapi.MinifyConfig(cfg); err != nil {
		return fmt.Errorf("kubeconfig context %s: %w", contextName, err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return fmt.Errorf("kubeconfig context %s: %w", contextName, err)
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// Delete leaves an adopted cluster as it was.
func (p *Provisioner) Delete(_ context.Context, rec provision.Record, r progress.Steps) error {
	r.Notef("cluster %s was adopted, not created: left as it was", rec[provision.KeyClusterName])
	return nil
}

// CollectLogs is not available for adopted clusters yet.
func (p *Provisioner) CollectLogs(context.Context, provision.Record, string) error {
	return provision.NotImplemented("log collection from an adopted cluster")
}

func hostOf(u string) string {
	if parsed, err := url.Parse(u); err == nil && parsed.Host != "" {
		return parsed.Host
	}
	return u
}

// RESTConfig builds a client configuration from a kubeconfig file and
// optional context.
func RESTConfig(kubeconfig, contextName string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: contextName}).ClientConfig()
	if err != nil {
		return nil, err
	}
	// client-go's default of 5 requests per second (burst 10) is a
	// controller's budget: checks that run at once, each listing and
	// creating a handful of objects, would wait on it rather than on the
	// cluster. kubectl's own limits are of this order.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = ClientQPS, ClientBurst
	}
	return cfg, nil
}

// The client-side rate limits of kaic's clients.
const (
	ClientQPS   = 50
	ClientBurst = 100
)
