package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile or broken file from exhausting memory.
const (
	// MaxFileSize is the largest profile or component file accepted.
	MaxFileSize = 1 << 20
	// maxNodes bounds the YAML nodes visited, aliases expanded.
	maxNodes = 100_000
	// maxDepth bounds nesting.
	maxDepth = 64
)

// renamedFields are field paths of earlier v1alpha1 profiles and their
// new names, so that an old profile's error says what to write instead.
var renamedFields = map[string]string{
	"spec.accelerator.extendedResourceName": "resourceName",
}

// document is a decoded YAML file: its generic value, shaped by the Go type
// it was checked against, and the line of every field path.
type document struct {
	value map[string]any
	lines map[string]int
}

// parseDocument checks data against the shape of target (a pointer to a
// struct with json tags) and returns its generic value. Every unknown field,
// wrong type and malformed scalar is reported, each with its path and line.
func parseDocument(file string, data []byte, target any) (*document, error) {
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: file, Message: fmt.Sprintf("file is %d bytes, larger than the %d byte limit", len(data), MaxFileSize)}}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, ErrorList{{File: file, Message: fmt.Sprintf("not a YAML text file: NUL byte at offset %d", i)}}
	}
	if !utf8.Valid(data) {
		return nil, ErrorList{{File: file, Message: "not a YAML text file: invalid UTF-8"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrorList{{File: file, Message: "file is empty: expected a YAML mapping with apiVersion, kind, metadata and spec"}}
		}
		return nil, yamlSyntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		if len(extra.Content) > 0 {
			return nil, ErrorList{{File: file, Line: extra.Line, Message: "more than one YAML document: a file holds exactly one"}}
		}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(file, err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null" {
		return nil, ErrorList{{File: file, Message: "file is empty: expected a YAML mapping with apiVersion, kind, metadata and spec"}}
	}
	w := &walker{errs: fieldErrors{file: file, lines: map[string]int{}}}
	v := w.walk(root.Content[0], reflect.TypeOf(target).Elem(), "", 0)
	if err := w.errs.list.errOrNil(); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrorList{{File: file, Message: "expected a YAML mapping at the top level"}}
	}
	return &document{value: m, lines: w.errs.lines}, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlSyntaxError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return ErrorList{{File: file, Line: line, Message: "invalid YAML: " + m[2]}}
	}
	return ErrorList{{File: file, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}}
}

// walker turns YAML nodes into generic values shaped by Go types.
type walker struct {
	errs    fieldErrors
	visited int
	stopped bool
}

var (
	durationType = reflect.TypeOf(Duration{})
	anyType      = reflect.TypeOf((*any)(nil)).Elem()
)

func (w *walker) fail(node *yaml.Node, path string, value any, hasValue bool, format string, args ...any) {
	w.errs.list = append(w.errs.list, &FieldError{File: w.errs.file, Line: node.Line, Path: path, Message: fmt.Sprintf(format, args...), Value: value, HasValue: hasValue})
}

func (w *walker) walk(node *yaml.Node, t reflect.Type, path string, depth int) any {
	if w.stopped {
		return nil
	}
	w.visited++
	if w.visited > maxNodes {
		w.fail(node, path, nil, false, "document expands to more than %d YAML nodes (aliases included); refusing to read it", maxNodes)
		w.stopped = true
		return nil
	}
	if depth > maxDepth {
		w.fail(node, path, nil, false, "nested deeper than %d levels", maxDepth)
		w.stopped = true
		return nil
	}
	if node.Kind == yaml.AliasNode {
		return w.walk(node.Alias, t, path, depth+1)
	}
	if path != "" {
		if _, seen := w.errs.lines[path]; !seen {
			w.errs.lines[path] = node.Line
		}
	}
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		if !w.scalar(node, path, "a duration such as 90s or 5m") {
			return nil
		}
		d, err := time.ParseDuration(node.Value)
		if err != nil || d < 0 {
			w.fail(node, path, node.Value, true, "must be a non-negative duration such as 90s or 5m")
			return nil
		}
		return node.Value
	case t == anyType:
		return w.generic(node, path, depth)
	}
	switch t.Kind() {
	case reflect.String:
		if !w.scalar(node, path, "a string") {
			return nil
		}
		return node.Value
	case reflect.Bool:
		if !w.scalar(node, path, "true or false") {
			return nil
		}
		if node.Tag != "!!bool" {
			w.fail(node, path, node.Value, true, "must be true or false")
			return nil
		}
		return node.Value == "true"
	case reflect.Int, reflect.Int32, reflect.Int64:
		if !w.scalar(node, path, "an integer") {
			return nil
		}
		n, err := strconv.ParseInt(node.Value, 0, 32)
		if node.Tag != "!!int" || err != nil {
			w.fail(node, path, node.Value, true, "must be an integer")
			return nil
		}
		return n
	case reflect.Float64:
		if !w.scalar(node, path, "a number") {
			return nil
		}
		f, err := strconv.ParseFloat(node.Value, 64)
		if (node.Tag != "!!float" && node.Tag != "!!int") || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			w.fail(node, path, node.Value, true, "must be a number")
			return nil
		}
		return f
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			w.fail(node, path, describe(node), true, "must be a list")
			return nil
		}
		out := make([]any, 0, len(node.Content))
		for i, item := range node.Content {
			out = append(out, w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1))
		}
		return out
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			w.fail(node, path, describe(node), true, "must be a mapping")
			return nil
		}
		out := make(map[string]any, len(node.Content)/2)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.fail(k, path, nil, false, "map keys must be strings")
				continue
			}
			out[k.Value] = w.walk(v, t.Elem(), joinKey(path, k.Value), depth+1)
		}
		return out
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			if path == "" {
				w.fail(node, path, describe(node), true, "the file must be a YAML mapping with apiVersion, kind, metadata and spec")
				return nil
			}
			w.fail(node, path, describe(node), true, "must be a mapping")
			return nil
		}
		fields := jsonFields(t)
		out := make(map[string]any, len(node.Content)/2)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			child := joinKey(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok || k.Kind != yaml.ScalarNode {
				msg := "unknown field"
				if to, ok := renamedFields[child]; ok {
					msg += fmt.Sprintf(" (renamed to %q)", to)
				} else if s := suggest(k.Value, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				w.fail(k, child, nil, false, "%s", msg)
				continue
			}
			w.errs.lines[child] = k.Line
			out[k.Value] = w.walk(v, ft, child, depth+1)
		}
		return out
	default:
		panic(fmt.Sprintf("profile: unsupported field type %s", t))
	}
}

// generic decodes free-form values (Helm values, kubelet config), still
// bounded by the node and depth limits.
func (w *walker) generic(node *yaml.Node, path string, depth int) any {
	switch node.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(node.Content)/2)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.fail(k, path, nil, false, "map keys must be strings")
				continue
			}
			out[k.Value] = w.walk(v, anyType, joinKey(path, k.Value), depth+1)
		}
		return out
	case yaml.SequenceNode:
		out := make([]any, 0, len(node.Content))
		for i, item := range node.Content {
			out = append(out, w.walk(item, anyType, fmt.Sprintf("%s[%d]", path, i), depth+1))
		}
		return out
	default:
		var v any
		if err := node.Decode(&v); err != nil {
			w.fail(node, path, node.Value, true, "invalid value: %v", err)
			return nil
		}
		return v
	}
}

func (w *walker) scalar(node *yaml.Node, path, want string) bool {
	if node.Kind != yaml.ScalarNode {
		w.fail(node, path, describe(node), true, "must be %s", want)
		return false
	}
	return true
}

func describe(node *yaml.Node) string {
	switch node.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return describe(node.Alias)
	default:
		return node.Value
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func joinKey(path, key string) string {
	if !identifier.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps the json names of a struct's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// suggest returns the known field closest to name, if it is close enough to
// be a typo.
func suggest(name string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	lower := strings.ToLower(name)
	for f := range fields {
		if strings.ToLower(f) == lower {
			return f
		}
		if d := editDistance(lower, strings.ToLower(f)); d < bestDist || d == bestDist && best != "" && f < best {
			best, bestDist = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeInto converts a checked generic value into its Go type.
func decodeInto(value map[string]any, target any) error {
	data, err := json.Marshal(value)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(target)
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.Duration == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as 5m: %w", err)
	}
	if s == "" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// IsZero reports an unset duration (for omitempty-style output).
func (d Duration) IsZero() bool { return d.Duration == 0 }
