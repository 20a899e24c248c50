package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/restmapper"
)

// OperatorsBuildHint is the command that builds the operator binaries.
const OperatorsBuildHint = "make testbin-operators"

// Operator is an operator binary that hack/testbin/build.sh writes into
// [BinDir], built from the version of Module that the wrapper module in
// Wrapper pins; its manifests (CRDs, webhooks) come from that module in the
// module cache. Declare one as a package-level pointer: it remembers
// whether [Operator.StartOnce] started it.
type Operator struct {
	// Name is the binary's file name and the name of its log in the
	// environment's log directory.
	Name string
	// Title names the operator in messages, e.g. "Kueue".
	Title string
	// Role is what the binary is to the operator, e.g. "manager".
	Role string
	// Module is the Go module the binary is built from.
	Module string
	// Wrapper is the wrapper module's directory, relative to the
	// repository root.
	Wrapper string

	once struct {
		sync.Once
		err  error
		skip string
	}
}

// BinaryPath returns where the binary is, without checking that it is.
func (o *Operator) BinaryPath() (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, o.Name), nil
}

func (o *Operator) wrapperDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, o.Wrapper), nil
}

// Version returns the version of Module the wrapper module pins.
func (o *Operator) Version() (string, error) {
	dir, err := o.wrapperDir()
	if err != nil {
		return "", err
	}
	return requiredVersion(filepath.Join(dir, "go.mod"), o.Module)
}

// VersionOrEmpty is Version without its error.
func (o *Operator) VersionOrEmpty() string {
	v, _ := o.Version()
	return v
}

// ModuleDir returns the module cache directory of the pinned Module,
// downloading it only if the cache lacks it.
func (o *Operator) ModuleDir(ctx context.Context) (string, error) {
	version, err := o.Version()
	if err != nil {
		return "", err
	}
	dir, err := o.wrapperDir()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", o.Module+"@"+version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating %s@%s in the module cache: %w", o.Module, version, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("locating %s@%s in the module cache: no directory in %q", o.Module, version, out)
	}
	return info.Dir, nil
}

// StartOnce runs start once per test binary, with the binary's path and a
// three-minute limit, and logs how long it took. When the binary is
// missing it skips t, or fails it (see [MissingOperator]); when start
// failed, now or in an earlier call, it fails t.
func (o *Operator) StartOnce(t testing.TB, start func(ctx context.Context, binary string) error) {
	t.Helper()
	o.once.Do(func() {
		binary, err := o.BinaryPath()
		if err != nil {
			o.once.err = err
			return
		}
		if _, err := os.Stat(binary); err != nil {
			o.once.skip = fmt.Sprintf("the %s %s %s is missing: build it with `%s`", o.Title, o.Role, binary, OperatorsBuildHint)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		began := time.Now()
		o.once.err = start(ctx, binary)
		if o.once.err == nil {
			t.Logf("%s %s ready in %s", o.Title, o.VersionOrEmpty(), time.Since(began).Round(time.Millisecond))
		}
	})
	switch {
	case o.once.skip != "":
		MissingOperator(t, o.once.skip)
	case o.once.err != nil:
		t.Fatalf("starting %s: %v", o.Title, o.once.err)
	}
}

// OperatorProcess is a running operator binary, stopped with the
// environment it was started for.
type OperatorProcess struct {
	c *component
}

// Start runs binary with args and environ added to the test binary's
// environment, logging to env.LogPath(o.Name). Env.Stop stops it along
// with the control loops; the kernel kills it if the test binary dies
// first (on Linux).
func (o *Operator) Start(env *Env, binary string, args, environ []string) (*OperatorProcess, error) {
	c, err := startComponentEnv(o.Name, binary, filepath.Dir(env.LogPath(o.Name)), args, environ)
	if err != nil {
		return nil, err
	}
	env.dependents = append(env.dependents, c)
	return &OperatorProcess{c: c}, nil
}

// WaitFor polls probe until it succeeds, the process exits or ctx ends;
// the error then quotes the end of the process's log.
func (p *OperatorProcess) WaitFor(ctx context.Context, probe func(context.Context) error) error {
	return p.c.waitReady(ctx, probe)
}

// WaitReady polls url (a readiness endpoint: there is nothing to watch)
// until it answers 200.
func (p *OperatorProcess) WaitReady(ctx context.Context, url string) error {
	return p.WaitFor(ctx, httpProbe(http.DefaultClient, url, ""))
}

// WaitServing polls until the TLS server at addr completes a handshake
// for 127.0.0.1 with a certificate caPEM vouches for.
func (p *OperatorProcess) WaitServing(ctx context.Context, addr string, caPEM []byte) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	return p.WaitFor(ctx, func(ctx context.Context) error {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// FreePorts returns n distinct ports that were free on 127.0.0.1.
func FreePorts(n int) ([]int, error) { return freeLoopbackPorts(n) }

// ApplyManifests creates on env the objects of the YAML file at path, or of
// the *.yaml files in the directory at path, that edit keeps (edit may
// change them; nil keeps all), then waits until the CRDs among them are
// established. A CRD that exists already is left as it is. It returns the
// objects created.
func ApplyManifests(ctx context.Context, env *Env, path string, edit func(*unstructured.Unstructured) (bool, error)) ([]*unstructured.Unstructured, error) {
	files := []string{path}
	if info, err := os.Stat(path); err != nil {
		return nil, err
	} else if info.IsDir() {
		files, err = filepath.Glob(filepath.Join(path, "*.yaml"))
		if err != nil || len(files) == 0 {
			return nil, fmt.Errorf("no manifests in %s (%v)", path, err)
		}
	}
	groups, err := restmapper.GetAPIGroupResources(env.Clientset().Discovery())
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	var created, crds []*unstructured.Unstructured
	for _, f := range files {
		objs, err := ReadManifests(f)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			if edit != nil {
				if keep, err := edit(obj); err != nil {
					return nil, err
				} else if !keep {
					continue
				}
			}
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
			}
			client := env.Dynamic().Resource(mapping.Resource)
			isCRD := mapping.Resource == CRDResource
			var createErr error
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				_, createErr = client.Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{})
			} else {
				_, createErr = client.Create(ctx, obj, metav1.CreateOptions{})
			}
			if createErr != nil && !(isCRD && apierrors.IsAlreadyExists(createErr)) {
				return nil, fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), createErr)
			}
			created = append(created, obj)
			if isCRD {
				crds = append(crds, obj)
			}
		}
	}
	for _, crd := range crds {
		if err := WaitForCRDEstablished(ctx, env.Dynamic(), crd.GetName()); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// ReadManifests decodes the YAML or JSON documents of the file at path,
// leaving out empty ones.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64*1024)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}
