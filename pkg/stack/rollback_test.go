package stack_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// releaseHistory returns the status of each revision of a release, as the
// Helm storage secrets label them.
func releaseHistory(t *testing.T, env *testenv.Env, ns, name string) map[string]string {
	t.Helper()
	secrets, err := env.Clientset().CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range secrets.Items {
		out[s.Labels["version"]] = s.Labels["status"]
	}
	return out
}

func TestFailedUpgradeRollsBackToLastDeployedRevision(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	cs := env.Clientset()
	good := testChart{name: "roll", version: "0.1.0"}.write(t)
	bad := testChart{name: "roll", version: "0.2.0", unschedulable: true}.write(t)
	comp := component("roll", ns, &profile.HelmChart{Chart: good}, map[string]any{"message": "good"})

	in := newInstaller(t, env, nil)
	recs, err := in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionInstalled || r.Revision != 1 {
		t.Fatalf("first install: %+v", r)
	}
	before, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "roll", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// An upgrade to a chart whose Deployment never becomes ready, with new
	// values: it fails within its timeout and goes back to revision 1.
	upgrade := component("roll", ns, &profile.HelmChart{Chart: bad}, map[string]any{"message": "bad"})
	upgrade.Readiness.Timeout.Duration = 15 * time.Second
	start := time.Now()
	recs, err = in.Install(t.Context(), []profile.Component{upgrade})
	if elapsed := time.Since(start); elapsed > 75*time.Second {
		t.Errorf("failed upgrade and rollback took %s", elapsed)
	}
	var notReady *stack.NotReadyError
	if !errors.As(err, &notReady) {
		t.Fatalf("upgrade error %v, want a NotReadyError", err)
	}
	msg := err.Error()
	t.Logf("error:\n%s", msg)
	for _, want := range []string{"upgrade of release roll (chart roll 0.2.0)", "Deployment " + ns + "/roll", "FailedScheduling", "rolled back: release roll rolled back to revision 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	if r := recs[0]; r.Action != stack.ActionFailed {
		t.Errorf("record %+v, want failed", r)
	}

	// The release is deployed again at a new revision holding revision 1.
	hist := releaseHistory(t, env, ns, "roll")
	if hist["1"] != "superseded" || hist["2"] != "failed" && hist["2"] != "superseded" || hist["3"] != "deployed" || len(hist) != 3 {
		t.Errorf("history %v, want 1 superseded, 2 failed, 3 deployed (the rollback)", hist)
	}
	// Its objects are as before the upgrade.
	if got := configMessage(t, cs, ns, "roll"); got != "good" {
		t.Errorf("message after the rollback %q, want good", got)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "roll-settings", metav1.GetOptions{})
	if err != nil || cm.Data["chartVersion"] != "0.1.0" {
		t.Errorf("configmap after the rollback: %v %v, want chart version 0.1.0", cm.Data, err)
	}
	after, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "roll", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Spec.Template.Spec.NodeSelector) != 0 {
		t.Errorf("deployment after the rollback keeps the upgrade's node selector %v", after.Spec.Template.Spec.NodeSelector)
	}
	if after.Spec.Template.Spec.Containers[0].Image != before.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("deployment image %s, want %s", after.Spec.Template.Spec.Containers[0].Image, before.Spec.Template.Spec.Containers[0].Image)
	}

	// Re-running the good component finds it as it wants it: no new revision.
	recs, err = in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionUnchanged || r.Revision != 3 {
		t.Errorf("re-run after the rollback: %+v, want unchanged at revision 3", r)
	}
}
