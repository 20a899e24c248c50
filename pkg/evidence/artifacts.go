package evidence

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// TestOutcomes are the test results a test artifact records.
type TestOutcomes struct {
	// Status maps a full test name (TestX or TestX/Sub) to its outcome.
	Status map[string]conformance.Status
	// Order lists the names in the order the artifact has them.
	Order []string
	// Properties are JUnit properties (empty for the other formats).
	Properties map[string]string
	// PackageFailed is a failure reported for no test (a go test -json
	// event without a test name): the run failed outside any test.
	PackageFailed bool
}

func newOutcomes() *TestOutcomes {
	return &TestOutcomes{Status: map[string]conformance.Status{}, Properties: map[string]string{}}
}

func (o *TestOutcomes) set(name string, s conformance.Status) {
	if _, seen := o.Status[name]; !seen {
		o.Order = append(o.Order, name)
	}
	// A failure anywhere in the artifact wins over another record.
	if o.Status[name] != conformance.Failed {
		o.Status[name] = s
	}
}

// Lookup returns the outcome of a test aggregated with its subtests
// (name/...): failed if any failed, skipped if all were skipped, passed
// otherwise. ok is false when the artifact has no such test.
func (o *TestOutcomes) Lookup(name string) (status conformance.Status, ok bool) {
	all, skipped := 0, 0
	for n, s := range o.Status {
		if n != name && !strings.HasPrefix(n, name+"/") {
			continue
		}
		all++
		switch s {
		case conformance.Failed:
			return conformance.Failed, true
		case conformance.Skipped:
			skipped++
		}
	}
	switch {
	case all == 0:
		return "", false
	case skipped == all:
		return conformance.Skipped, true
	}
	return conformance.Passed, true
}

// Failed lists the failed tests, in artifact order.
func (o *TestOutcomes) Failed() []string {
	var out []string
	for _, n := range o.Order {
		if o.Status[n] == conformance.Failed {
			out = append(out, n)
		}
	}
	return out
}

type xmlSuites struct {
	XMLName xml.Name
	Suites  []xmlSuite `xml:"testsuite"`
	xmlSuite
}

type xmlSuite struct {
	Name       string          `xml:"name,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []xmlCase       `xml:"testcase"`
	Suites     []xmlSuite      `xml:"testsuite"`
}

type xmlCase struct {
	Name    string    `xml:"name,attr"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct{} `xml:"skipped"`
}

// ParseJUnit reads a JUnit XML report with a <testsuites> or a bare
// <testsuite> root, as gotestsum and go-junit-report write them.
func ParseJUnit(data []byte) (*TestOutcomes, error) {
	var doc xmlSuites
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed XML: %w", err)
	}
	o := newOutcomes()
	var walk func(s xmlSuite)
	walk = func(s xmlSuite) {
		for _, p := range s.Properties {
			o.Properties[p.Name] = p.Value
		}
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil || c.Error != nil:
				o.set(c.Name, conformance.Failed)
			case c.Skipped != nil:
				o.set(c.Name, conformance.Skipped)
			default:
				o.set(c.Name, conformance.Passed)
			}
		}
		for _, sub := range s.Suites {
			walk(sub)
		}
	}
	switch doc.XMLName.Local {
	case "testsuites":
		for _, s := range doc.Suites {
			walk(s)
		}
	case "testsuite":
		walk(doc.xmlSuite)
	default:
		return nil, fmt.Errorf("root element is <%s>, want <testsuites> or <testsuite>", doc.XMLName.Local)
	}
	return o, nil
}

// ParseGoTestJSON reads a go test -json event stream.
func ParseGoTestJSON(data []byte) (*TestOutcomes, error) {
	o := newOutcomes()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var ev TestEvent
		if err := json.Unmarshal(text, &ev); err != nil {
			return nil, fmt.Errorf("line %d is not a go test -json event: %w", line, err)
		}
		if ev.Test == "" {
			if ev.Action == "fail" {
				o.PackageFailed = true
			}
			continue
		}
		switch ev.Action {
		case "pass":
			o.set(ev.Test, conformance.Passed)
		case "fail":
			o.set(ev.Test, conformance.Failed)
		case "skip":
			o.set(ev.Test, conformance.Skipped)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return o, nil
}

var goTestResultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)

// ParseGoTestLog reads go test -v text output.
func ParseGoTestLog(data []byte) (*TestOutcomes, error) {
	o := newOutcomes()
	for _, line := range strings.Split(string(data), "\n") {
		m := goTestResultLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch m[1] {
		case "PASS":
			o.set(m[2], conformance.Passed)
		case "FAIL":
			o.set(m[2], conformance.Failed)
		case "SKIP":
			o.set(m[2], conformance.Skipped)
		}
	}
	return o, nil
}

// parseArtifact parses a test artifact by its canonical base name; ok is
// false for any other file.
func parseArtifact(base string, data []byte) (o *TestOutcomes, ok bool, err error) {
	switch strings.ToLower(base) {
	case JUnitFile:
		o, err = ParseJUnit(data)
	case ResultsFile:
		o, err = ParseGoTestJSON(data)
	case E2ELogFile:
		o, err = ParseGoTestLog(data)
	default:
		return nil, false, nil
	}
	return o, true, err
}
