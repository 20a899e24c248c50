package stack_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// writeChart writes a chart made of templates (and other files, by path)
// into a new directory and returns its path.
func writeChart(t *testing.T, name, version string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	all := map[string]string{
		"Chart.yaml": fmt.Sprintf("apiVersion: v2\nname: %s\nversion: %s\ndescription: a chart written by kaic's tests\n", name, version),
	}
	for p, content := range files {
		all[p] = content
	}
	for p, content := range all {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// localComponent installs a chart directory with a timeout and the given
// readiness conditions.
func localComponent(name, ns, dir string, timeout time.Duration, r profile.Readiness) profile.Component {
	r.Timeout = profile.Duration{Duration: timeout}
	return profile.Component{Name: name, Namespace: ns, Helm: &profile.HelmChart{Chart: dir}, Readiness: &r}
}

// crdYAML is a namespaced CRD of kind in group, without a status
// subresource: what a template writes under status is stored as it is.
func crdYAML(group, kind, plural string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[3]s.%[1]s
spec:
  group: %[1]s
  names: {kind: %[2]s, plural: %[3]s, singular: %[4]s, listKind: %[2]sList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`, group, kind, plural, plural[:len(plural)-1])
}
