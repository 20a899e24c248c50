package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Component binary names as hack/testbin/build.sh writes them.
const (
	binEtcd              = "etcd"
	binAPIServer         = "kube-apiserver"
	binControllerManager = "kube-controller-manager"
	binScheduler         = "kube-scheduler"
	binKwok              = "kwok"

	// kwokStagesFile holds the Stage objects kwok needs to make nodes Ready
	// and pods Running; build.sh writes it next to the binaries.
	kwokStagesFile = "kwok-stages.yaml"
)

// testbinModFile is the wrapper module whose k8s.io/kubernetes requirement
// pins the control-plane version, relative to the repository root.
const testbinModFile = "hack/testbin/kubernetes/go.mod"

// BuildHint is the command that fills the binary cache.
const BuildHint = "make testbin"

// MissingBinariesError reports control-plane binaries absent from the
// testbin directory.
type MissingBinariesError struct {
	Dir     string
	Missing []string
}

func (e *MissingBinariesError) Error() string {
	return fmt.Sprintf("control-plane binaries missing from %s (%s); run `%s` to build them",
		e.Dir, strings.Join(e.Missing, ", "), BuildHint)
}

// InCI reports whether the CI environment variable is set to a true value;
// there a missing binary fails tests instead of skipping them.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// RequireOperatorsEnv names the variable that makes a missing operator
// binary (the Kueue or KubeRay manager some checks' tests run, built by
// `make testbin-operators`) a failure instead of a skip. CI sets it when
// those binaries are cached; they take longer to build than the rest of
// the suite takes to run.
const RequireOperatorsEnv = "KAIC_REQUIRE_OPERATORS"

// MissingOperator skips t because an operator binary is missing, or fails
// it when RequireOperatorsEnv is true.
func MissingOperator(t testing.TB, why string) {
	t.Helper()
	if req, err := strconv.ParseBool(os.Getenv(RequireOperatorsEnv)); err == nil && req {
		t.Fatalf("%s=true: %s", RequireOperatorsEnv, why)
	}
	t.Skip(why)
}

// BinDir returns the directory holding the control-plane binaries:
// $KAIC_TESTBIN_DIR if set, else the default cache directory for the pinned
// Kubernetes version. It does not check that the binaries exist.
func BinDir() (string, error) {
	if dir := os.Getenv("KAIC_TESTBIN_DIR"); dir != "" {
		return dir, nil
	}
	version, err := KubernetesVersion()
	if err != nil {
		return "", err
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locate cache directory: %w", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "kaic", "testbin", version), nil
}

// KubernetesVersion returns the control-plane version pinned in the
// repository (e.g. "v1.37.2"), found by walking up from the working
// directory to the file hack/testbin/kubernetes/go.mod.
func KubernetesVersion() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		path := filepath.Join(dir, testbinModFile)
		if _, err := os.Stat(path); err == nil {
			return requiredVersion(path, "k8s.io/kubernetes")
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no %s above %s; set KAIC_TESTBIN_DIR", testbinModFile, wd)
		}
	}
}

// requiredVersion returns the version of module in the require directives
// of the go.mod file at path, in single-line or block form.
func requiredVersion(path, module string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	inRequireBlock := false
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line, _, _ := strings.Cut(scanner.Text(), "//")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case fields[0] == "require" && len(fields) > 1 && fields[1] == "(":
			inRequireBlock = true
			continue
		case inRequireBlock && fields[0] == ")":
			inRequireBlock = false
			continue
		case fields[0] == "require":
			fields = fields[1:]
		case !inRequireBlock:
			continue
		}
		if len(fields) == 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	if err := scanner.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s does not require %s", path, module)
}

// binaries locates the executables a configuration needs.
type binaries struct {
	dir string
}

func (b binaries) path(name string) string { return filepath.Join(b.dir, name) }

// check returns a *MissingBinariesError naming every file of names that is
// absent or not executable.
func (b binaries) check(names ...string) error {
	var missing []string
	for _, name := range names {
		info, err := os.Stat(b.path(name))
		if err != nil || info.IsDir() || (name != kwokStagesFile && info.Mode()&0o111 == 0) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return &MissingBinariesError{Dir: b.dir, Missing: missing}
	}
	return nil
}

// isMissingBinaries reports whether err says binaries are absent.
func isMissingBinaries(err error) bool {
	var missing *MissingBinariesError
	return errors.As(err, &missing)
}
