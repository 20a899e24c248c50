// Package verifytest holds the integration test of the verify and report
// phases and of kaic validate: checks run against a real control plane,
// the evidence is written, and the validator accepts or rejects it.
package verifytest
