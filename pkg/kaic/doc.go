// Package kaic is kaic as a library: a Client whose methods are kaic's
// commands (Plan, Up, Provision, Install, Verify, Report, Down, Images,
// Doctor), the run directory they share (RunDir) and the table of cluster
// backends. The kaic CLI is a thin shell over it: each command maps its
// flags onto one Client call.
//
// A whole conformance run from a Go program:
//
//	printer := progress.NewPrinter(os.Stderr)
//	defer printer.Close()
//	client := kaic.New(kaic.WithProgress(printer))
//	res, err := client.Up(ctx, kaic.RunOptions{Profile: "kind-dra", Dir: "run"})
//	var failed *conformance.ChecksFailedError
//	switch {
//	case errors.As(err, &failed):
//		fmt.Println("requirements not met:", failed.IDs)
//	case err != nil:
//		return err
//	}
//	fmt.Println("evidence in", res.Dir)
//	return client.Down(ctx, kaic.DownOptions{Dir: res.Dir})
//
// Two rules hold for everything it does. What a run creates carries the
// run's id (package ownership) and is the only thing kaic changes or
// deletes: a Helm release, object or cluster that existed before stays as
// it was. And the run directory has one owner at a time: RunDir takes its
// lock before writing anything, and every file in it is written
// atomically.
package kaic
