package profile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/kaic-dev/kaic/profiles"
)

// maxExtendsDepth bounds chains of extends.
const maxExtendsDepth = 8

// Resolved is a loaded profile: merged with what it extends, defaulted,
// validated, with its stack resolved against the component catalog.
type Resolved struct {
	Profile *Profile
	// Components are the stack's components with built-in definitions and
	// overrides applied, in profile order.
	Components []Component
	// Warnings are problems that do not stop a run but that the user should
	// see (e.g. an opt-out the CNCF validator will reject).
	Warnings []string
	// Source is the file path or "builtin:<name>".
	Source string
	// Digest is the sha256 of the resolved profile's canonical JSON; a
	// resumed run compares it with the one it recorded.
	Digest string
}

// Loader reads profiles. The zero value reads kaic's built-in profiles and
// stack components and checks requirement ids only syntactically.
type Loader struct {
	// Builtins holds built-in profiles as <name>.yaml (default: profiles.FS).
	Builtins fs.FS
	// Components is the stack component catalog (default: built-in stacks).
	Components *ComponentCatalog
	// Requirements resolves a conformance version's requirement ids and
	// levels; nil skips those checks.
	Requirements RequirementLookup

	catalogOnce sync.Once
	catalog     *ComponentCatalog
	catalogErr  error
}

// components returns the catalog, reading the built-in one once.
func (l *Loader) components() (*ComponentCatalog, error) {
	if l.Components != nil {
		return l.Components, nil
	}
	l.catalogOnce.Do(func() {
		l.catalog, l.catalogErr = LoadComponentCatalog(nil)
		if l.catalogErr != nil {
			l.catalogErr = fmt.Errorf("built-in stack components: %w", l.catalogErr)
		}
	})
	return l.catalog, l.catalogErr
}

func (l *Loader) builtins() fs.FS {
	if l.Builtins != nil {
		return l.Builtins
	}
	return profiles.FS
}

// BuiltinNames lists the built-in profiles, sorted.
func (l *Loader) BuiltinNames() []string {
	files, _ := fs.Glob(l.builtins(), "*.yaml")
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, strings.TrimSuffix(f, ".yaml"))
	}
	sort.Strings(out)
	return out
}

// BuiltinBytes returns a built-in profile's file.
func (l *Loader) BuiltinBytes(name string) ([]byte, error) {
	data, err := fs.ReadFile(l.builtins(), name+".yaml")
	if err != nil {
		return nil, &NotFoundError{Ref: name, Message: fmt.Sprintf("no built-in profile %q (built-ins: %s)", name, strings.Join(l.BuiltinNames(), ", "))}
	}
	return data, nil
}

// Load reads a profile from a file path, or a built-in profile by name when
// no such file exists.
func (l *Loader) Load(ref string) (*Resolved, error) {
	if ref == "" {
		return nil, errors.New("no profile given")
	}
	if st, err := os.Stat(ref); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("%s is a directory, not a profile file", ref)
		}
		if st.Size() > MaxFileSize {
			return nil, ErrorList{{File: ref, Message: fmt.Sprintf("file is %d bytes, larger than the %d byte limit", st.Size(), MaxFileSize)}}
		}
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, err
		}
		return l.LoadBytes(ref, data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if strings.ContainsAny(ref, `/\`) || strings.HasSuffix(ref, ".yaml") || strings.HasSuffix(ref, ".yml") {
		return nil, &NotFoundError{Ref: ref, Message: fmt.Sprintf("profile file %s does not exist", ref)}
	}
	data, err := l.BuiltinBytes(ref)
	if err != nil {
		return nil, &NotFoundError{Ref: ref, Message: fmt.Sprintf("%s is neither a profile file nor a built-in profile (built-ins: %s)", ref, strings.Join(l.BuiltinNames(), ", "))}
	}
	return l.LoadBytes("builtin:"+ref, data)
}

// LoadBytes reads a profile whose file name (for messages) is source.
func (l *Loader) LoadBytes(source string, data []byte) (*Resolved, error) {
	cat, err := l.components()
	if err != nil {
		return nil, err
	}
	doc, err := parseDocument(source, data, &Profile{})
	if err != nil {
		return nil, err
	}
	merged, err := l.resolveExtends(source, doc, 0, map[string]bool{})
	if err != nil {
		return nil, err
	}
	delete(merged, "extends")
	var p Profile
	if err := decodeInto(merged, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	applyDefaults(&p)
	errs := &fieldErrors{file: source, lines: doc.lines}
	if _, extends := doc.value["extends"]; extends {
		errs.rename = userPaths(merged, doc.value)
	}
	components, warnings := validate(errs, &p, cat, l.Requirements)
	if err := errs.list.errOrNil(); err != nil {
		return nil, err
	}
	canonical, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canonical)
	return &Resolved{Profile: &p, Components: components, Warnings: warnings, Source: source, Digest: hex.EncodeToString(sum[:])}, nil
}

// resolveExtends merges doc over the chain of built-in profiles it extends.
func (l *Loader) resolveExtends(source string, doc *document, depth int, seen map[string]bool) (map[string]any, error) {
	ext, _ := doc.value["extends"].(string)
	if ext == "" {
		return doc.value, nil
	}
	line := doc.lines["extends"]
	if seen[ext] {
		return nil, ErrorList{{File: source, Line: line, Path: "extends", Message: "extends chain loops back to this profile", Value: ext, HasValue: true}}
	}
	if depth >= maxExtendsDepth {
		return nil, ErrorList{{File: source, Line: line, Path: "extends", Message: fmt.Sprintf("extends chain is longer than %d profiles", maxExtendsDepth)}}
	}
	data, err := l.BuiltinBytes(ext)
	if err != nil {
		msg := "names no built-in profile (built-ins: " + strings.Join(l.BuiltinNames(), ", ") + ")"
		if s := closest(ext, l.BuiltinNames()); s != "" {
			msg = fmt.Sprintf("names no built-in profile (did you mean %q?)", s)
		}
		return nil, ErrorList{{File: source, Line: line, Path: "extends", Message: msg, Value: ext, HasValue: true}}
	}
	seen[ext] = true
	baseSource := "builtin:" + ext
	baseDoc, err := parseDocument(baseSource, data, &Profile{})
	if err != nil {
		return nil, err
	}
	base, err := l.resolveExtends(baseSource, baseDoc, depth+1, seen)
	if err != nil {
		return nil, err
	}
	return mergeValues(base, doc.value, "").(map[string]any), nil
}

// JSON renders the resolved profile as indented JSON, as a run would use it.
func (r *Resolved) JSON() ([]byte, error) {
	return json.MarshalIndent(r.Profile, "", "  ")
}
