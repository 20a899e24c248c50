package conditions

import (
	"encoding/json"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestReadConditionsAsTheAPIServerSendsThem(t *testing.T) {
	var u unstructured.Unstructured
	doc := `{"status": {"conditions": [
		{"type": "Ready", "status": "True", "observedGeneration": 3},
		"not a condition",
		{"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "all good"}
	], "parents": [{"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}]}}`
	if err := json.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	got := Of(&u)
	if len(got) != 2 || got[0].ObservedGeneration != 3 {
		t.Fatalf("Of = %+v", got)
	}
	if !IsTrue(&u, "Ready") || IsTrue(&u, "Degraded") || IsTrue(&u, "Missing") {
		t.Error("IsTrue misreads the conditions")
	}
	if _, ok := Get(&u, "Missing"); ok {
		t.Error("Get found a condition the object lacks")
	}
	if want := []string{"Ready=True", "Degraded=False (AsExpected): all good"}; !slices.Equal(Strings(got), want) {
		t.Errorf("Strings = %q, want %q", Strings(got), want)
	}
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	if c, ok := Find(In(parents[0].(map[string]any)), "Accepted"); !ok || c.Reason != "Accepted" {
		t.Errorf("conditions at the top of a map: %+v %v", c, ok)
	}
}
