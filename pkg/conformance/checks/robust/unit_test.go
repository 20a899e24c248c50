package robust

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// The API server's own wording: a denial names the webhook, a failed call
// says it failed calling it; anything else is not the webhook's verdict.
func TestJudgeRejection(t *testing.T) {
	const hook = "vraycluster.kb.io"
	gr := schema.GroupResource{Group: "ray.io", Resource: "rayclusters"}
	withMessage := func(code int32, msg string) error {
		err := apierrors.NewInternalError(errors.New("x"))
		err.ErrStatus.Code, err.ErrStatus.Message = code, msg
		return err
	}
	for name, tc := range map[string]struct {
		err  error
		want string // "" means accepted as the webhook's denial
	}{
		"denied": {withMessage(422, `admission webhook "vraycluster.kb.io" denied the request: RayCluster.ray.io "x" is invalid`), ""},
		"wrapped": {fmt.Errorf("applying RayCluster x: %w",
			withMessage(422, `admission webhook "vraycluster.kb.io" denied the request: bad`)), ""},
		"call failed": {withMessage(500, `Internal error occurred: failed calling webhook "vraycluster.kb.io": failed to call webhook: Post "https://127.0.0.1:9443/validate": dial tcp 127.0.0.1:9443: connect: connection refused`),
			"could not call webhook vraycluster.kb.io"},
		"other webhook": {withMessage(400, `admission webhook "policy.example.com" denied the request: no`), "a webhook other than vraycluster.kb.io"},
		"schema":        {apierrors.NewInvalid(schema.GroupKind{Group: "ray.io", Kind: "RayCluster"}, "x", nil), "not by webhook vraycluster.kb.io"},
		"forbidden":     {apierrors.NewForbidden(gr, "x", errors.New("no")), "(Forbidden), but not by webhook"},
		"no status":     {errors.New("connection reset"), "without an answer from the API server"},
	} {
		got := judgeRejection(tc.err, hook)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: %v, want it accepted", name, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", name, got, tc.want)
		}
	}
}

func TestCheckCABundle(t *testing.T) {
	certs, err := newWebhookCerts("svc")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, tc := range map[string]struct {
		bundle []byte
		at     time.Time
		want   string
	}{
		"valid":         {certs.CAPEM, now, ""},
		"empty":         {nil, now, "is empty"},
		"not PEM":       {[]byte("not a certificate"), now, "holds no PEM certificate"},
		"key only":      {certs.KeyPEM, now, "holds no PEM certificate"},
		"expired":       {certs.CAPEM, now.Add(48 * time.Hour), "is valid only from"},
		"bad DER":       {[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), now, "does not parse"},
		"two, first ok": {append(append([]byte{}, certs.CAPEM...), certs.CertPEM...), now, ""},
	} {
		err := checkCABundle(tc.bundle, tc.at)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// The profile's explicit choice wins; else the one built-in operator
// component of the stack; else the cluster decides.
func TestOperatorOf(t *testing.T) {
	withStack := func(op string, components ...profile.Component) *profile.Profile {
		p := &profile.Profile{}
		p.Spec.Checks.RobustController.Operator = op
		p.Spec.Stack.Components = components
		return p
	}
	for name, tc := range map[string]struct {
		p    *profile.Profile
		want string
	}{
		"nil":              {nil, ""},
		"explicit":         {withStack("kubeflow-trainer", profile.Component{Name: "kuberay-operator"}), "kubeflow-trainer"},
		"from stack":       {withStack("", profile.Component{Name: "cert-manager"}, profile.Component{Name: "kuberay-operator"}), "kuberay"},
		"trainer in stack": {withStack("", profile.Component{Name: "kubeflow-trainer"}), "kubeflow-trainer"},
		"both in stack":    {withStack("", profile.Component{Name: "kuberay-operator"}, profile.Component{Name: "kubeflow-trainer"}), ""},
		"disabled":         {withStack("", profile.Component{Name: "kuberay-operator", Disabled: true}), ""},
		"none":             {withStack(""), ""},
	} {
		if got := OperatorOf(tc.p); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

// The operator's namespace comes from the profile when it names one; left
// empty, the check finds it on the cluster.
func TestConfigForNamespace(t *testing.T) {
	if c := configFor(nil); c.namespace != "" {
		t.Errorf("nil profile: namespace %q, want it found on the cluster", c.namespace)
	}
	p := &profile.Profile{}
	p.Spec.Checks.RobustController.Namespace = "ai-operators"
	if c := configFor(p); c.namespace != "ai-operators" {
		t.Errorf("namespace %q, want the profile's ai-operators", c.namespace)
	}
}
