package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Check verifies one requirement. Run is written like a Go test: it
// reports through t (Errorf, Fatalf, Skipf, subtests with t.Run) and
// records what it does for the transcript (t.Step, t.Observe, t.Apply).
// The runner gives each check its own namespace (env.Namespace), a
// deadline (t.Context()) and a time-boxed cleanup that runs whatever
// happens.
type Check interface {
	// ID is the requirement id, e.g. "dra_support".
	ID() string
	// Run verifies the requirement against the cluster in env.
	Run(t *T, env *Env)
}

// Alone is implemented by checks the runner must run by themselves, after
// every other check has finished: a check that needs the cluster's
// accelerators to itself (cluster autoscaling fills a node pool and
// watches it grow and shrink) would otherwise race the others for them.
type Alone interface {
	RunsAlone() bool
}

// NeedsTime is implemented by checks that take longer than the usual
// per-check timeout by nature (waiting for nodes to be created and
// removed): the runner gives them at least MinTimeout.
type NeedsTime interface {
	MinTimeout() time.Duration
}

// RunAlone wraps c so that the runner runs it by itself, after the
// others, and gives it at least minTimeout (0 keeps the runner's).
func RunAlone(c Check, minTimeout time.Duration) Check {
	return aloneCheck{Check: c, minTimeout: minTimeout}
}

type aloneCheck struct {
	Check
	minTimeout time.Duration
}

func (aloneCheck) RunsAlone() bool             { return true }
func (c aloneCheck) MinTimeout() time.Duration { return c.minTimeout }

// NewCheck returns a Check for id that runs fn.
func NewCheck(id string, fn func(t *T, env *Env)) Check {
	return funcCheck{id: id, fn: fn}
}

type funcCheck struct {
	id string
	fn func(t *T, env *Env)
}

func (c funcCheck) ID() string         { return c.id }
func (c funcCheck) Run(t *T, env *Env) { c.fn(t, env) }

// DefaultProbeImage is the workload image checks run when the profile
// names none: kaic's own probe image, loaded into kind clusters.
const DefaultProbeImage = "kaic-probe:latest"

// Env is what a check works with: clients of the cluster, the profile's
// accelerator model and the check's namespace. The runner hands each
// check its own copy with Namespace set.
type Env struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Config  *rest.Config
	// Mapper maps kinds to resources for T.Apply; nil builds one from
	// Client's discovery on first use.
	Mapper meta.RESTMapper
	// Accelerator is the profile's accelerator model, defaults applied.
	Accelerator profile.Accelerator
	// ProbeImage is the image of check workloads.
	ProbeImage string
	// Simulated is true when the accelerators are not real hardware.
	Simulated bool
	// Namespace is the check's own namespace, created before Run and
	// deleted after it.
	Namespace string
	// RunID, when set, is the id of the kaic run the checks belong to; the
	// checks' namespaces carry it (package ownership).
	RunID string
	// DRAAPI is the version of resource.k8s.io the checks use: the newest
	// the cluster serves. The runner discovers it once, before any check
	// runs, unless it is already discovered.
	DRAAPI draapi.API
}

// DRA returns a client of the cluster's Dynamic Resource Allocation API
// (resource.k8s.io) at the version of DRAAPI, which takes and returns the
// resource.k8s.io/v1 Go types whatever version it talks to. With DRAAPI
// not discovered (an Env used without the runner) the client discovers it
// itself.
func (e *Env) DRA() *draapi.Client {
	if !e.DRAAPI.Discovered() && e.Client != nil {
		return draapi.ClientFor(e.Client.Discovery(), e.Dynamic)
	}
	return draapi.NewClient(e.Dynamic, e.DRAAPI)
}

// NewEnv builds an Env for the cluster of cfg and the accelerator model and
// probe image of p (which may be nil).
func NewEnv(cfg *rest.Config, p *profile.Profile) (*Env, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating cluster client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating cluster client: %w", err)
	}
	env := &Env{Client: client, Dynamic: dyn, Config: cfg, ProbeImage: DefaultProbeImage}
	env.Mapper = discoveryMapper(client)
	if p != nil {
		env.Accelerator = p.Spec.Accelerator
		env.Simulated = p.IsSimulated()
		if p.Spec.Checks.ProbeImage != "" {
			env.ProbeImage = p.Spec.Checks.ProbeImage
		}
	}
	return env, nil
}

// discoveryMapper maps kinds to resources with the cluster's discovery,
// queried on first use and cached.
func discoveryMapper(client kubernetes.Interface) meta.RESTMapper {
	return restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
}

// forCheck returns a copy of e for one check.
func (e *Env) forCheck(namespace string) *Env {
	c := *e
	c.Namespace = namespace
	return &c
}

// Need is something a check needs from the cluster before it can show
// anything, such as an API group a stack component serves. The runner
// looks at the needs of every selected check before any check runs, once
// per need, and reports a missing one once, up front, for every check that
// needs it, instead of letting each check fail on it separately.
type Need struct {
	// Key identifies the need among all checks' (equal keys are looked
	// at once).
	Key string
	// Missing says what is missing, e.g. "the cluster does not serve
	// kueue.x-k8s.io (Kueue's API)".
	Missing string
	// Present reports whether the cluster has it. An error means it could
	// not tell; the check then runs and finds out itself.
	Present func(ctx context.Context, env *Env) (bool, error)
}

// Needer is implemented by checks that declare their needs.
type Needer interface {
	Needs(env *Env) []Need
}

// WithNeeds returns c declaring needs (computed from the run's Env).
func WithNeeds(c Check, needs func(env *Env) []Need) Check {
	return needsCheck{Check: c, needs: needs}
}

type needsCheck struct {
	Check
	needs func(env *Env) []Need
}

func (c needsCheck) Needs(env *Env) []Need { return c.needs(env) }

// APIGroupNeed is the need of an API group the cluster must serve; what
// names the software that serves it.
func APIGroupNeed(group, what string) Need {
	return Need{
		Key:     "api:" + group,
		Missing: fmt.Sprintf("the cluster does not serve the API group %s (%s)", group, what),
		Present: func(ctx context.Context, env *Env) (bool, error) {
			groups, err := env.Client.Discovery().ServerGroups()
			if err != nil {
				return false, err
			}
			for _, g := range groups.Groups {
				if g.Name == group {
					return true, nil
				}
			}
			return false, nil
		},
	}
}

// DeviceClassNeed is the need of the accelerator model's DeviceClass.
func DeviceClassNeed(env *Env) Need {
	name := env.Accelerator.DeviceClass
	return Need{
		Key:     "deviceclass:" + name,
		Missing: fmt.Sprintf("DeviceClass %s of the accelerator model does not exist: the DRA driver's installation should create it", name),
		Present: func(ctx context.Context, env *Env) (bool, error) {
			if name == "" {
				return false, errors.New("the accelerator model names no DeviceClass")
			}
			_, err := env.DRA().DeviceClasses().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		},
	}
}

// ExtendedResourceNeed is the need of the accelerator model's extended
// resource (device-plugin allocation): some node advertises it in its
// allocatable.
func ExtendedResourceNeed(env *Env) Need {
	name := corev1.ResourceName(env.Accelerator.ResourceName)
	return Need{
		Key:     "extendedresource:" + string(name),
		Missing: fmt.Sprintf("no node advertises allocatable %s, the accelerator model's extended resource: its device plugin is not running (or spec.accelerator.resourceName names another resource)", name),
		Present: func(ctx context.Context, env *Env) (bool, error) {
			if name == "" {
				return false, errors.New("the accelerator model names no extended resource")
			}
			// A device plugin registers with the kubelet once its pod runs,
			// and the kubelet reports the resource in its next node status:
			// right after install, wait a bounded time for it.
			advertises := func(o k8sruntime.Object) bool {
				n, ok := o.(*corev1.Node)
				if !ok {
					return false
				}
				q, has := n.Status.Allocatable[name]
				return has && !q.IsZero()
			}
			wctx, cancel := context.WithTimeout(ctx, ExtendedResourceWait)
			defer cancel()
			nodes := env.Client.CoreV1().Nodes()
			_, err := UntilWithSync(wctx, ListWatch(nodes.List, nodes.Watch, "", ""), &corev1.Node{},
				func(store cache.Store) (bool, error) {
					return slices.ContainsFunc(store.List(), func(o any) bool { return advertises(o.(k8sruntime.Object)) }), nil
				},
				func(ev watch.Event) (bool, error) { return advertises(ev.Object), nil })
			if err != nil && wctx.Err() != nil && ctx.Err() == nil {
				return false, nil
			}
			return err == nil, err
		},
	}
}

// ExtendedResourceWait bounds the wait for a node to advertise the
// accelerator model's extended resource: a device plugin that just started
// shows up in its node's status within a kubelet status update or two.
var ExtendedResourceWait = 45 * time.Second
