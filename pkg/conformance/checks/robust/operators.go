package robust

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Operator is what the check needs to know about one AI operator: where
// its pods run, the CRDs it registers, the validating webhook that guards
// its main custom resource, one custom resource that webhook must reject
// and one its controller must reconcile to a finished state.
type Operator struct {
	// Name is the profile's name of the operator
	// (spec.checks.robustController.operator).
	Name string
	// Title names the operator in messages.
	Title string
	// Component is the built-in stack component that installs it.
	Component string
	// WebhookComponent is the built-in stack component that enables its
	// validating webhook, when that is not Component itself.
	WebhookComponent string
	// PodSelector is the well-known labels of the operator's pods (those
	// its chart sets). The check looks for them in every namespace: where
	// an installation puts the operator is not assumed
	// (spec.checks.robustController.namespace names it).
	PodSelector string
	// CRDs the operator registers; the first is the one Resource is of.
	CRDs []string
	// WebhookConfiguration names the ValidatingWebhookConfiguration; empty
	// when installations name it differently, and then the configuration
	// holding Webhook is used.
	WebhookConfiguration string
	// Webhook is the webhook (in that configuration) that validates
	// Resource; the invalid custom resource must be denied by it.
	Webhook string
	// Resource and Kind are the custom resource the check creates.
	Resource schema.GroupVersionResource
	Kind     string
	// Invalid is a custom resource named name that the schema accepts and
	// the webhook rejects; InvalidWhy says why it is invalid.
	Invalid    func(name string) map[string]any
	InvalidWhy string
	// Valid is a custom resource the controller reconciles to its finished
	// state; ValidWhat describes it. probeImage is the check's workload
	// image, for operators whose pods can run it.
	Valid     func(name, probeImage string) map[string]any
	ValidWhat string
	// ValidAnnotations are set on the valid custom resource.
	ValidAnnotations map[string]string
	// Finished is the success state, as the transcript says it.
	Finished string
	// Reconciled reports whether the custom resource reached its finished
	// state; an error means it reached a terminal state that is not.
	Reconciled func(cr *unstructured.Unstructured) (bool, error)
	// Children are the objects the controller must have created for it.
	Children []Child
	// Unobservable says what cannot be observed when the operator's pods
	// land on nodes that run no containers (kwok): the verdict then rests
	// on the pods the cluster reports Ready, not on the workload itself.
	Unobservable string
}

// Child is a kind of object the controller creates for a custom resource:
// objects of Resource in the custom resource's namespace, matching
// Selector (with %s replaced by the custom resource's name) and controlled
// by it (ControlledBy) or not necessarily (pods of a child Job, say).
type Child struct {
	What         string
	Resource     schema.GroupVersionResource
	Selector     string
	ControlledBy bool
	// Min is how many there must be at least.
	Min int
	// Ready, when set, must hold for each of them.
	Ready func(u *unstructured.Unstructured) bool
}

var (
	pods     = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	services = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	jobSets  = schema.GroupVersionResource{Group: "jobset.x-k8s.io", Version: "v1alpha2", Resource: "jobsets"}
)

// Operators returns the built-in operators, in the order the check
// prefers them when it finds several installed (profile.RobustControllerOperators).
func Operators() []Operator {
	return []Operator{kubeRay(), kubeflowTrainer()}
}

// Lookup returns the built-in operator called name.
func Lookup(name string) (Operator, error) {
	var names []string
	for _, op := range Operators() {
		if op.Name == name {
			return op, nil
		}
		names = append(names, op.Name)
	}
	return Operator{}, fmt.Errorf("unknown AI operator %q (known: %v)", name, names)
}

// kubeRay is the KubeRay operator as the kuberay-operator stack component
// installs it. Its RayCluster webhook (vraycluster.kb.io) checks that the
// name is a DNS-1035 label of at most 53 characters and that worker group
// names are unique; the CRD's schema checks neither.
func kubeRay() Operator {
	raycluster := schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayclusters"}
	headSelector := "ray.io/cluster=%s,ray.io/node-type=head"
	return Operator{
		Name:      profile.OperatorKubeRay,
		Title:     "KubeRay",
		Component: "kuberay-operator",
		// The chart ships no webhook: kuberay-webhook adds it.
		WebhookComponent: "kuberay-webhook",
		PodSelector:      "app.kubernetes.io/name=kuberay-operator",
		CRDs:             []string{"rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"},
		Webhook:          "vraycluster.kb.io",
		Resource:         raycluster,
		Kind:             "RayCluster",
		Invalid: func(name string) map[string]any {
			return map[string]any{
				"headGroupSpec": map[string]any{
					"rayStartParams": map[string]any{},
					"template":       podTemplate("ray-head", "kaic-invalid:none", nil),
				},
				"workerGroupSpecs": []any{
					rayWorkerGroup("workers"),
					rayWorkerGroup("workers"),
				},
			}
		},
		InvalidWhy: "two worker groups share the name \"workers\"",
		Valid: func(name, probeImage string) map[string]any {
			// The probe image has no Ray: the cluster keeps its command
			// (ray.io/overwrite-container-cmd) and has a
			// readiness probe of its own, so KubeRay injects none.
			probe := map[string]any{
				"httpGet":       map[string]any{"path": "/", "port": int64(probePort)},
				"periodSeconds": int64(2),
			}
			template := podTemplate("ray-head", probeImage, []any{"/kaic", "probe", "serve", "--addr", fmt.Sprintf(":%d", probePort)})
			container := template["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			container["readinessProbe"] = probe
			container["livenessProbe"] = probe
			return map[string]any{
				"headGroupSpec": map[string]any{
					"rayStartParams": map[string]any{},
					"template":       template,
				},
			}
		},
		ValidWhat:        "a RayCluster with a head group only (the probe image, its command kept, with a readiness probe of its own)",
		ValidAnnotations: map[string]string{"ray.io/overwrite-container-cmd": "true"},
		Finished:         "status.state=ready",
		Reconciled: func(cr *unstructured.Unstructured) (bool, error) {
			state, _, _ := unstructured.NestedString(cr.Object, "status", "state")
			switch state {
			case "ready":
				return true, nil
			case "failed":
				reason, _, _ := unstructured.NestedString(cr.Object, "status", "reason")
				return false, fmt.Errorf("the RayCluster failed: %s", reason)
			}
			return false, nil
		},
		Children: []Child{
			{What: "head pod", Resource: pods, Selector: headSelector, ControlledBy: true, Min: 1, Ready: podReady},
			{What: "head service", Resource: services, Selector: headSelector, ControlledBy: true, Min: 1},
		},
		Unobservable: "the head pod's Ready condition is kwok's, not its readiness probe's, and nothing ran in it (with a Ray image, Ray's GCS and dashboard would)",
	}
}

// probePort is where the probe serves in the valid RayCluster's head pod,
// clear of the ports KubeRay declares for Ray (6379, 8265, 10001, 8080).
const probePort = 8000

func rayWorkerGroup(name string) map[string]any {
	return map[string]any{
		"groupName":      name,
		"replicas":       int64(0),
		"minReplicas":    int64(0),
		"maxReplicas":    int64(1),
		"rayStartParams": map[string]any{},
		"template":       podTemplate("ray-worker", "kaic-invalid:none", nil),
	}
}

func podTemplate(container, image string, command []any) map[string]any {
	c := map[string]any{
		"name":  container,
		"image": image,
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
		},
	}
	if command != nil {
		c["command"] = command
		c["imagePullPolicy"] = "IfNotPresent"
	}
	return map[string]any{"spec": map[string]any{"containers": []any{c}}}
}

// kubeflowTrainer is Kubeflow Trainer as its chart (and the official
// suite's test) installs it: its TrainJob webhook rejects a TrainJob whose
// runtime does not exist.
func kubeflowTrainer() Operator {
	return Operator{
		Name:                 profile.OperatorKubeflowTrainer,
		Title:                "Kubeflow Trainer",
		Component:            "kubeflow-trainer",
		PodSelector:          "app.kubernetes.io/name=kubeflow-trainer",
		CRDs:                 []string{"trainjobs.trainer.kubeflow.org", "clustertrainingruntimes.trainer.kubeflow.org", "trainingruntimes.trainer.kubeflow.org"},
		WebhookConfiguration: "validator.trainer.kubeflow.org",
		Webhook:              "validator.trainjob.trainer.kubeflow.org",
		Resource:             schema.GroupVersionResource{Group: "trainer.kubeflow.org", Version: "v1alpha1", Resource: "trainjobs"},
		Kind:                 "TrainJob",
		Invalid: func(string) map[string]any {
			return map[string]any{"runtimeRef": map[string]any{"name": "does-not-exist-runtime", "kind": "ClusterTrainingRuntime"}}
		},
		InvalidWhy: "its runtime, ClusterTrainingRuntime does-not-exist-runtime, does not exist",
		Valid: func(string, string) map[string]any {
			return map[string]any{
				"runtimeRef": map[string]any{"name": "torch-distributed", "kind": "ClusterTrainingRuntime"},
				"trainer": map[string]any{
					"numNodes": int64(1),
					"command":  []any{"python", "-c", "print('kaic')"},
				},
			}
		},
		ValidWhat: "a TrainJob of one node on ClusterTrainingRuntime torch-distributed",
		Finished:  "condition Complete=True",
		Reconciled: func(cr *unstructured.Unstructured) (bool, error) {
			if c, ok := conditions.Get(cr, "Failed"); ok && c.IsTrue() {
				return false, fmt.Errorf("the TrainJob failed: %s %s", c.Reason, c.Message)
			}
			return conditions.IsTrue(cr, "Complete"), nil
		},
		Children: []Child{
			{What: "JobSet", Resource: jobSets, Selector: "", ControlledBy: true, Min: 1},
			{What: "pod", Resource: pods, Selector: "jobset.sigs.k8s.io/jobset-name=%s", Min: 1},
		},
		Unobservable: "the pods' completion is kwok's and the training command never ran",
	}
}

// podReady reports whether a pod (unstructured) is Running and Ready.
func podReady(u *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	return phase == "Running" && conditions.IsTrue(u, "Ready")
}
