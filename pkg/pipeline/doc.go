// Package pipeline runs kaic's phases (provision, install, verify, report) in order and
// records every run in its run directory: the run state in state.json, written atomically
// after every change, so that an interrupted or failed run can be resumed, or torn down,
// from that directory alone.
//
// The package knows nothing about what a phase does. Callers hand a Runner an ordered list
// of Phase values whose Run functions close over whatever they need (the profile, clients);
// a phase reads what earlier phases recorded through its RunContext and reports its steps to
// a progress.Reporter. Only one process at a time may use a run directory: the Runner holds
// an exclusive lock on <dir>/.lock while it runs.
package pipeline
