package evidence

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// JUnit document types, in the format gotestsum and go-junit-report write.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	ClassName string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

// JUnit property names kaic records.
const (
	PropertySimulated          = "kaic.simulated"
	PropertyConformanceVersion = "kaic.conformanceVersion"
)

// JUnit returns junit.xml: one test case per test and subtest, under a
// <testsuites> root. Properties record the conformance version, the
// accelerator model and whether it is simulated.
func JUnit(run *Run) ([]byte, error) {
	start, end := run.span()
	suite := junitSuite{Name: Package, Time: fmt.Sprintf("%.3f", end.Sub(start).Seconds())}
	if !start.IsZero() {
		suite.Timestamp = start.UTC().Format("2006-01-02T15:04:05Z")
	}
	suite.Properties = []junitProperty{
		{"kaic.version", orDev(run.KaicVersion)},
		{PropertyConformanceVersion, run.Version},
	}
	if run.Profile != nil {
		a := run.Profile.Spec.Accelerator
		suite.Properties = append(suite.Properties,
			junitProperty{"kaic.profile", run.Profile.Metadata.Name},
			junitProperty{"kaic.accelerator.model", a.Model},
			junitProperty{"kaic.accelerator.draDriver", a.DRADriver})
		if a.DevicePlugin() {
			suite.Properties = append(suite.Properties,
				junitProperty{"kaic.accelerator.allocation", a.Allocation},
				junitProperty{"kaic.accelerator.resourceName", a.ResourceName})
		}
	}
	suite.Properties = append(suite.Properties, junitProperty{PropertySimulated, fmt.Sprint(run.Simulated())})
	if run.Simulated() {
		suite.Properties = append(suite.Properties, junitProperty{"kaic.notice", run.SimulatedNotice()})
	}
	for _, res := range run.ordered() {
		for _, tr := range res.Tests() {
			c := junitCase{ClassName: Package, Name: tr.Name, Time: fmt.Sprintf("%.3f", tr.Duration.Seconds())}
			out := strings.Join(tr.Output, "\n")
			switch tr.Status {
			case conformance.Failed:
				msg := "Failed"
				if tr == res.Test && res.Reason != "" {
					msg = res.Reason
				}
				c.Failure = &junitMessage{Message: msg, Body: out}
				suite.Failures++
			case conformance.Passed:
				c.SystemOut = out
			default:
				msg := "Skipped"
				if tr == res.Test && res.Reason != "" {
					msg = res.Reason
					if res.Status == conformance.NotApplicable {
						msg = "N/A: " + res.Reason
					}
				}
				c.Skipped = &junitMessage{Message: msg, Body: out}
				suite.Skipped++
			}
			suite.Tests++
			suite.Cases = append(suite.Cases, c)
		}
	}
	doc := junitSuites{Tests: suite.Tests, Failures: suite.Failures, Skipped: suite.Skipped, Time: suite.Time, Suites: []junitSuite{suite}}
	data, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(data, '\n')...), nil
}
