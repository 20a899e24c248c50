package profile

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem with a profile, located by its field path (and
// the line of the YAML file it came from when known).
type FieldError struct {
	// File is the profile file or built-in name the field was read from.
	File string
	// Line is the 1-based line of the field, 0 when unknown (e.g. a value
	// inherited from an extended profile or set by defaulting).
	Line int
	// Path is the field path, e.g. spec.cluster.kind.workers.
	Path string
	// Message says what is wrong and what is expected.
	Message string
	// Value is the offending value, shown as "got <value>"; nil for none.
	Value any
	// HasValue distinguishes a nil offending value from no value.
	HasValue bool
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.HasValue {
		b.WriteString(", got ")
		b.WriteString(formatValue(e.Value))
	}
	return b.String()
}

func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 80 {
			v = v[:77] + "..."
		}
		return fmt.Sprintf("%q", v)
	case nil:
		return "null"
	default:
		s := fmt.Sprint(v)
		if len(s) > 80 {
			s = s[:77] + "..."
		}
		return s
	}
}

// ErrorList is every problem found in a profile. It is returned as an error
// only when it is not empty.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	if len(l) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(l), strings.Join(lines, "\n  "))
}

// errOrNil returns the list sorted by line then path, or nil when empty.
func (l ErrorList) errOrNil() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if (a.Line == 0) != (b.Line == 0) {
			return a.Line != 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Path < b.Path
	})
	return l
}

// fieldErrors collects problems with their lines.
type fieldErrors struct {
	file  string
	lines map[string]int
	list  ErrorList
	// rename, when set, turns a path into the merged profile into the
	// path the user wrote (see userPaths).
	rename func(string) string
}

// add records a problem without an offending value.
func (f *fieldErrors) add(path, format string, args ...any) {
	path = f.userPath(path)
	f.list = append(f.list, &FieldError{File: f.file, Line: f.lineOf(path), Path: path, Message: fmt.Sprintf(format, args...)})
}

// invalid records a problem with its offending value.
func (f *fieldErrors) invalid(path string, value any, format string, args ...any) {
	path = f.userPath(path)
	f.list = append(f.list, &FieldError{File: f.file, Line: f.lineOf(path), Path: path, Message: fmt.Sprintf(format, args...), Value: value, HasValue: true})
}

func (f *fieldErrors) userPath(path string) string {
	if f.rename == nil {
		return path
	}
	return f.rename(path)
}

// lineOf finds the line of path or of its closest recorded parent.
func (f *fieldErrors) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := f.lines[p]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// NotFoundError is returned for a profile reference that names neither a
// file nor a built-in profile.
type NotFoundError struct {
	Ref     string
	Message string
}

func (e *NotFoundError) Error() string { return e.Message }
