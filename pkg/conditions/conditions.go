// Package conditions reads the status conditions (type, status, reason,
// message) of objects kaic handles as unstructured data: CRDs, Cluster API
// Clusters, Gateway API and KubeRay resources, Kueue workloads, APIServices.
package conditions

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Condition is one status condition.
type Condition struct {
	Type, Status, Reason, Message string
	ObservedGeneration            int64
}

// IsTrue reports whether the condition's status is True.
func (c Condition) IsTrue() bool { return c.Status == "True" }

// String is "Type=Status (Reason): Message", leaving out what is empty.
func (c Condition) String() string {
	s := fmt.Sprintf("%s=%s", c.Type, c.Status)
	if c.Reason != "" {
		s += " (" + c.Reason + ")"
	}
	if c.Message != "" {
		s += ": " + c.Message
	}
	return s
}

// In reads the list under path+"conditions" of obj (obj["conditions"]
// when path is empty, as in a Gateway API parent status). Entries that are
// not conditions are left out.
func In(obj map[string]any, path ...string) []Condition {
	raw, _, _ := unstructured.NestedSlice(obj, append(path, "conditions")...)
	out := make([]Condition, 0, len(raw))
	for _, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		c := Condition{}
		c.Type, _ = m["type"].(string)
		c.Status, _ = m["status"].(string)
		c.Reason, _ = m["reason"].(string)
		c.Message, _ = m["message"].(string)
		switch g := m["observedGeneration"].(type) {
		case int64: // as client-go decodes JSON numbers
			c.ObservedGeneration = g
		case float64: // as encoding/json does
			c.ObservedGeneration = int64(g)
		}
		out = append(out, c)
	}
	return out
}

// Of reads an object's status.conditions.
func Of(u *unstructured.Unstructured) []Condition { return In(u.Object, "status") }

// Find returns the condition of type typ, and whether there is one.
func Find(conds []Condition, typ string) (Condition, bool) {
	for _, c := range conds {
		if c.Type == typ {
			return c, true
		}
	}
	return Condition{}, false
}

// Get returns an object's status condition of type typ, and whether it has
// one.
func Get(u *unstructured.Unstructured, typ string) (Condition, bool) {
	return Find(Of(u), typ)
}

// IsTrue reports whether an object has a condition of type typ whose
// status is True.
func IsTrue(u *unstructured.Unstructured, typ string) bool {
	c, ok := Get(u, typ)
	return ok && c.IsTrue()
}

// Strings formats each condition with String.
func Strings(conds []Condition) []string {
	out := make([]string, len(conds))
	for i, c := range conds {
		out[i] = c.String()
	}
	return out
}
