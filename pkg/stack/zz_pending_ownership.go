package stack

// Placeholders replaced by the ownership change of pkg/stack; this file is
// deleted when it lands.

// WithRunID (placeholder).
func WithRunID(string) Option { return func(*Installer) {} }

// WithAdopt (placeholder).
func WithAdopt(...string) Option { return func(*Installer) {} }

// WithRecorder (placeholder).
func WithRecorder(func(Record)) Option { return func(*Installer) {} }

// MergeRecords (placeholder): later records replace earlier ones by component.
func MergeRecords(earlier, now []Record) []Record {
	out := append([]Record(nil), earlier...)
	for _, r := range now {
		replaced := false
		for i := range out {
			if out[i].Component == r.Component {
				out[i], replaced = r, true
			}
		}
		if !replaced {
			out = append(out, r)
		}
	}
	return out
}
