// Package evidence writes the submission-ready evidence of a conformance
// run and checks submissions the way the CNCF validator does.
//
// A run's evidence lives in <out>/v<X.Y>/<product-dir>/, the layout of the
// cncf/k8s-ai-conformance repository: PRODUCT.yaml filled in from the
// official checklist of the version, junit.xml, results.json (a go test
// -json event stream), e2e.log (go test -v text), a transcript per check
// in tests/<TestName>/output.md and a self-contained report.html. Every
// artifact is derived from the results the runner saved in <out>/results,
// so Write can regenerate them at any time.
//
// Validate re-implements the rules of the CNCF submission validator
// (scripts/validate.go, including its hybrid-verification rules that parse
// junit.xml, results.json and e2e.log) without network access.
package evidence
