// Package profile is kaic's Profile API (kaic.dev/v1alpha1, kind Profile):
// the types, strict decoding with field paths and line numbers, extends of
// built-in profiles, defaulting, validation that reports every problem at
// once, and the built-in stack component catalog a profile's stack resolves
// against.
package profile
