// Package gang verifies the gang_scheduling requirement with Kueue: the
// cluster serves Kueue's kueue.x-k8s.io API (v1beta2, else v1beta1: the
// version is discovered and recorded) and a Kueue controller activates two
// queues the check sets up, each with a CPU and memory quota of the same
// whole number of pods; a Job whose pods fit its queue's quota is admitted
// whole, all its pods run and it completes; a Job with one pod more than
// its queue's quota holds gets no bound or running pod at all for the
// whole observation window, and its Workload says why it is not admitted.
// Each Job has a queue of its own, so the two cases run at the same time
// and neither's quota depends on the other: the Job beyond the quota is
// refused for its own size, not because the other holds the quota.
package gang

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// ID is the requirement this package verifies.
const ID = "gang_scheduling"

// Kueue's resources the check needs, and the labels that tie Jobs to queues
// and Workloads to Jobs.
const (
	resourceFlavors = "resourceflavors"
	clusterQueues   = "clusterqueues"
	localQueues     = "localqueues"
	workloads       = "workloads"
)

var apiResources = []string{resourceFlavors, clusterQueues, localQueues, workloads}

const (
	queueNameLabel = "kueue.x-k8s.io/queue-name"
	jobUIDLabel    = "kueue.x-k8s.io/job-uid"
)

// Names of what the check creates in its namespace. The cluster-scoped
// ResourceFlavor and the ClusterQueue of the Job that fits are named after
// the namespace, the ClusterQueue of the Job beyond the quota after the
// namespace and beyondQueueSuffix.
const (
	localQueueName    = "gang"
	beyondQueueName   = "beyond-quota"
	beyondQueueSuffix = "-" + beyondQueueName
	fitsJobName       = "fits"
	beyondJobName     = "beyond-quota"
)

// The gang that fits, how long the Job beyond the quota is watched (the
// official suite's default window) and how long each probe pod runs.
const (
	gangSize       = 3
	negativeWindow = 30 * time.Second
	podSleep       = 10 * time.Second
)

// Time limits of the waits, each within the check's own deadline.
const (
	queueActiveTimeout = time.Minute
	admitTimeout       = 2 * time.Minute
	runTimeout         = 3 * time.Minute
)

// Requests of every pod of the check's Jobs; the quota is a whole number
// of pods. They set no limits: the quota counts requests, and a limit
// would only risk throttling or killing the probe.
var (
	podCPU    = resource.MustParse("100m")
	podMemory = resource.MustParse("128Mi")
)

// config sizes the check; tests shorten its waits.
type config struct {
	pods         int           // pods of the Job that fits; the quota holds exactly these
	window       time.Duration // how long the Job beyond the quota is watched
	sleep        time.Duration // how long each probe pod sleeps
	queueTimeout time.Duration // how long the queue may take to become Active
}

// Check returns the gang_scheduling check.
func Check() conformance.Check {
	c := config{pods: gangSize, window: negativeWindow, sleep: podSleep, queueTimeout: queueActiveTimeout}
	return conformance.WithNeeds(conformance.NewCheck(ID, c.run), func(*conformance.Env) []conformance.Need {
		return []conformance.Need{conformance.APIGroupNeed(Group, "Kueue")}
	})
}

func (c config) run(t *conformance.T, env *conformance.Env) {
	var api API
	if !t.Run("KueueAPIServed", func(t *conformance.T) { api = apiServed(t, env) }) {
		return
	}
	if !t.Run("QueueActive", func(t *conformance.T) { c.queueActive(t, env, api) }) {
		return
	}
	// The two cases use queues of their own and run side by side: the
	// observation window of the Job beyond the quota, not the sum of both,
	// sets how long the check takes.
	var wg sync.WaitGroup
	wg.Go(func() { t.Run("JobThatFitsIsAdmittedWhole", func(t *conformance.T) { c.jobFits(t, env, api) }) })
	wg.Go(func() { t.Run("JobBeyondQuotaGetsNoPod", func(t *conformance.T) { c.jobBeyondQuota(t, env, api) }) })
	wg.Wait()
}

// apiServed discovers the version of Kueue's API the cluster serves,
// records the one the check uses and checks that it serves the resources
// the check needs.
func apiServed(t *conformance.T, env *conformance.Env) API {
	t.Step("Discover the versions of %s the API server serves (the check drives %s, the first served)", Group, strings.Join(Versions, ", then "))
	api, err := DiscoverAPI(env.Client.Discovery())
	if err != nil {
		t.Fatalf("%v", err)
	}
	switch {
	case len(api.Served) == 0:
		t.Fatalf("the API server does not serve %s: Kueue (or another gang scheduler this check drives through it) is not installed", Group)
	case !api.Usable():
		t.Fatalf("the API server serves %s only as %s, none of %s: the installed Kueue's API is one this check cannot drive",
			Group, strings.Join(api.Served, ", "), strings.Join(Versions, ", "))
	}
	t.Observe("Kueue API used", fmt.Sprintf("%s (served: %s)", api, strings.Join(api.Served, ", ")))
	gv := api.GroupVersion.String()
	served, err := conformance.ServedResources(t, env, gv)
	if err != nil {
		t.Fatalf("discovering the resources of %s: %v", gv, err)
	}
	for _, want := range apiResources {
		if !slices.Contains(served, want) {
			t.Errorf("%s does not serve %s: Kueue's installation is incomplete", gv, want)
		}
	}
	return api
}

// quota returns the ClusterQueue's nominal quota: exactly c.pods pods.
func (c config) quota() (cpu, memory resource.Quantity) {
	cpu = *resource.NewMilliQuantity(podCPU.MilliValue()*int64(c.pods), resource.DecimalSI)
	memory = *resource.NewQuantity(podMemory.Value()*int64(c.pods), resource.BinarySI)
	return cpu, memory
}

// queue is one of the check's queues: a ClusterQueue for the check's
// namespace only and the LocalQueue in it that Jobs name.
type queue struct{ cluster, local string }

// queues returns the queue of the Job that fits and that of the Job beyond
// the quota.
func queues(env *conformance.Env) (fits, beyond queue) {
	return queue{env.Namespace, localQueueName}, queue{env.Namespace + beyondQueueSuffix, beyondQueueName}
}

func (c config) queueActive(t *conformance.T, env *conformance.Env, api API) {
	flavor := env.Namespace
	fits, beyond := queues(env)
	cpu, memory := c.quota()
	t.Step("Set up two queues whose quotas each hold exactly %d pods, one for each Job: ResourceFlavor %s; ClusterQueues %s and %s (cpu %s, memory %s each) for namespace %s only; LocalQueues %s and %s",
		c.pods, flavor, fits.cluster, beyond.cluster, cpu.String(), memory.String(), env.Namespace, fits.local, beyond.local)
	t.Apply(api.Object("ResourceFlavor", flavor, "", map[string]any{}))
	for _, q := range []queue{fits, beyond} {
		t.Apply(api.Object("ClusterQueue", q.cluster, "", map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": env.Namespace}},
			"queueingStrategy":  "BestEffortFIFO",
			"resourceGroups": []any{map[string]any{
				"coveredResources": []any{"cpu", "memory"},
				"flavors": []any{map[string]any{
					"name": flavor,
					"resources": []any{
						map[string]any{"name": "cpu", "nominalQuota": cpu.String()},
						map[string]any{"name": "memory", "nominalQuota": memory.String()},
					},
				}},
			}},
		}))
		t.Apply(api.Object("LocalQueue", q.local, env.Namespace, map[string]any{"clusterQueue": q.cluster}))
	}

	ctx, cancel := context.WithTimeout(t.Context(), c.queueTimeout)
	defer cancel()
	for _, q := range []struct {
		kind, namespace, name string
		resource              schema.GroupVersionResource
	}{
		{"ClusterQueue", "", fits.cluster, api.Resource(clusterQueues)},
		{"ClusterQueue", "", beyond.cluster, api.Resource(clusterQueues)},
		{"LocalQueue", env.Namespace, fits.local, api.Resource(localQueues)},
		{"LocalQueue", env.Namespace, beyond.local, api.Resource(localQueues)},
	} {
		obj, err := waitForCondition(ctx, env, q.resource, q.namespace, q.name, "Active")
		if err != nil {
			if obj != nil {
				t.Observe(q.kind+" "+q.name+" conditions as last seen", strings.Join(conditions.Strings(conditions.Of(obj)), "\n"))
			}
			t.Fatalf("%s %s did not become Active within %s: no Kueue controller reconciles it (%v)", q.kind, q.name, c.queueTimeout, err)
		}
		t.Observe(q.kind+" "+q.name, strings.Join(conditions.Strings(conditions.Of(obj)), "\n"))
	}
}

func (c config) jobFits(t *conformance.T, env *conformance.Env, api API) {
	n := c.pods
	q, _ := queues(env)
	t.Step("Submit Job %s of %d pods (parallelism = completions = %d, %s CPU and %s memory each) to LocalQueue %s: together they fill its quota exactly",
		fitsJobName, n, n, podCPU.String(), podMemory.String(), q.local)
	job := c.submit(t, env, fitsJobName, q.local, n)

	ctx, cancel := context.WithTimeout(t.Context(), admitTimeout)
	defer cancel()
	wl, err := waitForWorkload(ctx, env, api, job.GetUID(), func(wl *unstructured.Unstructured) bool {
		return conditions.IsTrue(wl, "Admitted")
	})
	if err != nil {
		if wl != nil {
			t.Observe("Workload "+wl.GetName()+" as last seen", strings.Join(conditions.Strings(conditions.Of(wl)), "\n"))
		}
		t.Fatalf("the Workload of Job %s was not admitted within %s: %v", fitsJobName, admitTimeout, err)
	}
	admitted, assignments := admittedPods(wl)
	t.Observe("admission of Workload "+wl.GetName(), strings.Join(assignments, "\n"))
	if admitted != n {
		t.Errorf("Workload %s was admitted for %d pods, want all %d at once", wl.GetName(), admitted, n)
	}

	t.Step("Watch the pods of Job %s until all %d are bound and have run", fitsJobName, n)
	ctx, cancel = context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	pods, err := waitForPodsRan(ctx, env, fitsJobName, n)
	t.Observe(fmt.Sprintf("pods of Job %s", fitsJobName), strings.Join(podLines(pods), "\n"))
	if err != nil {
		t.Fatalf("not all %d pods of Job %s ran: %v", n, fitsJobName, err)
	}
	done, err := waitForJobComplete(ctx, env, fitsJobName)
	if err != nil {
		t.Fatalf("Job %s did not complete: %v", fitsJobName, err)
	}
	t.Observe("Job "+fitsJobName, fmt.Sprintf("Complete, %d pods succeeded", done.Status.Succeeded))
	t.Logf("Job %s was admitted whole: %d pods ran and it completed", fitsJobName, n)
	t.Shown("a %d-pod Job was admitted all together and completed", n)
}

func (c config) jobBeyondQuota(t *conformance.T, env *conformance.Env, api API) {
	n := c.pods + 1
	_, q := queues(env)
	t.Step("Submit Job %s of %d pods (%s CPU and %s memory each) to LocalQueue %s, one pod more than its quota holds: %d of them would fit, a gang scheduler starts none",
		beyondJobName, n, podCPU.String(), podMemory.String(), q.local, c.pods)
	job := c.submit(t, env, beyondJobName, q.local, n)
	created := time.Now()

	t.Step("Watch its pods and its Workload for %s: no pod may be bound or run, the Workload may not be admitted", c.window)
	ctx, cancel := context.WithTimeout(t.Context(), c.window)
	defer cancel()
	var (
		wg           sync.WaitGroup
		pods         map[string]*corev1.Pod
		firstBound   map[string]time.Duration
		wl           *unstructured.Unstructured
		admittedAt   time.Duration
		podErr, wErr error
	)
	wg.Go(func() { pods, firstBound, podErr = watchPods(ctx, env, beyondJobName, created) })
	wg.Go(func() { wl, admittedAt, wErr = watchWorkload(ctx, env, api, job.GetUID(), created) })
	wg.Wait()
	if t.Context().Err() != nil {
		t.Fatalf("the check's deadline ended the observation window early")
	}
	for _, err := range []error{podErr, wErr} {
		if err != nil {
			t.Fatalf("watching Job %s: %v", beyondJobName, err)
		}
	}

	t.Observe(fmt.Sprintf("pods of Job %s during the window", beyondJobName), strings.Join(podLines(pods), "\n"))
	var bound []string
	for name, after := range firstBound {
		p := pods[name]
		bound = append(bound, fmt.Sprintf("%s (node %q, phase %s, %s after the Job was created)", name, p.Spec.NodeName, p.Status.Phase, after.Round(100*time.Millisecond)))
	}
	sort.Strings(bound)
	if len(bound) > 0 {
		t.Errorf("%d pod(s) of Job %s, which does not fit the quota, were bound or ran: %s", len(bound), beyondJobName, strings.Join(bound, "; "))
	}
	if wl == nil {
		t.Fatalf("no Workload was created for Job %s within %s: Kueue does not manage Jobs labelled %s", beyondJobName, c.window, queueNameLabel)
	}
	if admittedAt > 0 {
		t.Observe("Workload "+wl.GetName()+" at the end of the window", strings.Join(conditions.Strings(conditions.Of(wl)), "\n"))
		count, _ := admittedPods(wl)
		t.Errorf("Workload %s was admitted (quota reserved for %d pods) %s after the Job was created, although its %d pods exceed the quota of %d",
			wl.GetName(), count, admittedAt.Round(100*time.Millisecond), n, c.pods)
		return
	}
	reason, ok := conditions.Get(wl, "QuotaReserved")
	if !ok {
		t.Observe("Workload "+wl.GetName()+" at the end of the window", strings.Join(conditions.Strings(conditions.Of(wl)), "\n"))
		t.Errorf("Workload %s has no QuotaReserved condition saying why it is not admitted", wl.GetName())
		return
	}
	t.Observe("why Workload "+wl.GetName()+" is not admitted", reason.String())
	if !strings.Contains(strings.ToLower(reason.Message), "quota") {
		t.Errorf("the Workload's QuotaReserved message does not name the quota as the reason: %q", reason.Message)
		return
	}
	t.Shown("a %d-pod Job beyond the quota got no pod at all", n)
}

// submit creates a Job of n probe pods in LocalQueue queue and returns it
// as created, after admission webhooks.
func (c config) submit(t *conformance.T, env *conformance.Env, name, queue string, n int) *unstructured.Unstructured {
	count := int32(n)
	requests := corev1.ResourceList{corev1.ResourceCPU: podCPU, corev1.ResourceMemory: podMemory}
	pod := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{
			Name:            "probe",
			Image:           env.ProbeImage,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            probe.Args("sleep", c.sleep.String()),
			Resources:       corev1.ResourceRequirements{Requests: requests},
		}},
		TerminationGracePeriodSeconds: new(int64),
	}
	if key := env.Accelerator.NodeTaintKey; key != "" {
		pod.Tolerations = []corev1.Toleration{{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	job := t.Apply(&batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{queueNameLabel: queue}},
		Spec: batchv1.JobSpec{
			Parallelism:  &count,
			Completions:  &count,
			BackoffLimit: new(int32),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "kaic-probe"}},
				Spec:       pod,
			},
		},
	})
	suspended, _, _ := unstructured.NestedBool(job.Object, "spec", "suspend")
	t.Observe("Job "+name+" as created", fmt.Sprintf("spec.suspend=%t", suspended))
	if !suspended {
		t.Errorf("Job %s was not suspended when created: its pods can start before the queue admits the whole gang (is Kueue's Job webhook active?)", name)
	}
	return job
}

// waitForCondition watches the object until its condition ct is True and
// returns it as last seen.
func waitForCondition(ctx context.Context, env *conformance.Env, gvr schema.GroupVersionResource, namespace, name, ct string) (*unstructured.Unstructured, error) {
	lw := dynamicListWatch(env, gvr, namespace, fields.OneTermEqualSelector("metadata.name", name).String(), "")
	var last *unstructured.Unstructured
	_, err := conformance.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(event watch.Event) (bool, error) {
		u, ok := event.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		last = u
		if event.Type == watch.Deleted {
			return false, fmt.Errorf("%s %s was deleted", u.GetKind(), name)
		}
		return conditions.IsTrue(u, ct), nil
	})
	return last, err
}

// waitForWorkload watches the Workload of the Job with uid until done.
func waitForWorkload(ctx context.Context, env *conformance.Env, api API, uid types.UID, done func(*unstructured.Unstructured) bool) (*unstructured.Unstructured, error) {
	lw := dynamicListWatch(env, api.Resource(workloads), env.Namespace, "", labels.Set{jobUIDLabel: string(uid)}.String())
	var last *unstructured.Unstructured
	_, err := conformance.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(event watch.Event) (bool, error) {
		u, ok := event.Object.(*unstructured.Unstructured)
		if !ok || event.Type == watch.Deleted {
			return false, nil
		}
		last = u
		return done(u), nil
	})
	if err != nil && last == nil {
		err = fmt.Errorf("no Workload was created for the Job: %w", err)
	}
	return last, err
}

// watchWorkload follows the Workload of the Job with uid until ctx ends,
// returning it as last seen and, if it was admitted or reserved quota, how
// long after created that was first seen.
func watchWorkload(ctx context.Context, env *conformance.Env, api API, uid types.UID, created time.Time) (*unstructured.Unstructured, time.Duration, error) {
	var admittedAt time.Duration
	last, err := waitForWorkload(ctx, env, api, uid, func(u *unstructured.Unstructured) bool {
		if admittedAt == 0 && (conditions.IsTrue(u, "Admitted") || conditions.IsTrue(u, "QuotaReserved")) {
			admittedAt = max(time.Since(created), time.Millisecond)
		}
		return false
	})
	if windowEnded(ctx, err) {
		err = nil
	}
	return last, admittedAt, err
}

// watchPods follows the pods of Job job until ctx ends, returning every pod
// seen (as last seen) and, for those that were bound or ran, how long after
// created that was first seen.
func watchPods(ctx context.Context, env *conformance.Env, job string, created time.Time) (map[string]*corev1.Pod, map[string]time.Duration, error) {
	pods := map[string]*corev1.Pod{}
	bound := map[string]time.Duration{}
	_, err := conformance.UntilWithSync(ctx, podListWatch(env, job), &corev1.Pod{}, nil, func(event watch.Event) (bool, error) {
		p, ok := event.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		pods[p.Name] = p
		if _, seen := bound[p.Name]; !seen && (p.Spec.NodeName != "" || p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded) {
			bound[p.Name] = time.Since(created)
		}
		return false, nil
	})
	if windowEnded(ctx, err) {
		err = nil
	}
	return pods, bound, err
}

// windowEnded reports whether err only says that ctx's deadline passed.
func windowEnded(ctx context.Context, err error) bool {
	return err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// waitForPodsRan watches the pods of Job job until n distinct pods are
// bound and Running or Succeeded. A failed pod is an error.
func waitForPodsRan(ctx context.Context, env *conformance.Env, job string, n int) (map[string]*corev1.Pod, error) {
	pods := map[string]*corev1.Pod{}
	ran := map[string]bool{}
	_, err := conformance.UntilWithSync(ctx, podListWatch(env, job), &corev1.Pod{}, nil, func(event watch.Event) (bool, error) {
		p, ok := event.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		pods[p.Name] = p
		switch p.Status.Phase {
		case corev1.PodRunning, corev1.PodSucceeded:
			if p.Spec.NodeName != "" {
				ran[p.Name] = true
			}
		case corev1.PodFailed:
			return false, fmt.Errorf("pod %s failed: %s %s", p.Name, p.Status.Reason, p.Status.Message)
		}
		return len(ran) >= n, nil
	})
	if err != nil {
		return pods, fmt.Errorf("%d of %d pods ran: %w", len(ran), n, err)
	}
	return pods, nil
}

// waitForJobComplete watches Job name until it is Complete; a Failed Job is
// an error.
func waitForJobComplete(ctx context.Context, env *conformance.Env, name string) (*batchv1.Job, error) {
	jobs := env.Client.BatchV1().Jobs(env.Namespace)
	lw := conformance.ListWatch(jobs.List, jobs.Watch, conformance.NameSelector(name), "")
	var last *batchv1.Job
	_, err := conformance.UntilWithSync(ctx, lw, &batchv1.Job{}, nil, func(event watch.Event) (bool, error) {
		job, ok := event.Object.(*batchv1.Job)
		if !ok {
			return false, nil
		}
		last = job
		for _, c := range job.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				return true, nil
			case batchv1.JobFailed:
				return false, fmt.Errorf("job %s failed: %s %s", name, c.Reason, c.Message)
			}
		}
		return false, nil
	})
	return last, err
}

func podListWatch(env *conformance.Env, job string) *cache.ListWatch {
	pods := env.Client.CoreV1().Pods(env.Namespace)
	return conformance.ListWatch(pods.List, pods.Watch, "", labels.Set{batchv1.JobNameLabel: job}.String())
}

func dynamicListWatch(env *conformance.Env, gvr schema.GroupVersionResource, namespace, fieldSelector, labelSelector string) *cache.ListWatch {
	res := env.Dynamic.Resource(gvr).Namespace(namespace)
	return conformance.ListWatch(res.List, res.Watch, fieldSelector, labelSelector)
}

// admittedPods sums the pod counts of a Workload's admission and lists its
// pod set assignments for the transcript.
func admittedPods(wl *unstructured.Unstructured) (int, []string) {
	assignments, _, _ := unstructured.NestedSlice(wl.Object, "status", "admission", "podSetAssignments")
	queue, _, _ := unstructured.NestedString(wl.Object, "status", "admission", "clusterQueue")
	total := 0
	var lines []string
	for _, a := range assignments {
		m, _ := a.(map[string]any)
		count, _, _ := unstructured.NestedInt64(m, "count")
		flavors, _, _ := unstructured.NestedStringMap(m, "flavors")
		total += int(count)
		lines = append(lines, fmt.Sprintf("ClusterQueue %s, pod set %v: %d pods, flavors %v", queue, m["name"], count, flavors))
	}
	return total, lines
}

func podLines(pods map[string]*corev1.Pod) []string {
	lines := []string{}
	for _, p := range pods {
		node := p.Spec.NodeName
		if node == "" {
			node = "(not bound)"
		}
		lines = append(lines, fmt.Sprintf("%s: phase %s, node %s", p.Name, p.Status.Phase, node))
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		lines = append(lines, "(none)")
	}
	return lines
}
