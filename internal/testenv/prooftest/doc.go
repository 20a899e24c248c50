// Package prooftest holds integration tests showing that testenv's control
// plane behaves like a real cluster where kaic depends on it: the scheduler
// allocates DRA ResourceClaims from published ResourceSlices, refuses claims
// it cannot satisfy with a readable reason, and CustomResourceDefinitions
// applied server-side become established and serve custom resources.
package prooftest
