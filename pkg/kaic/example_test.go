package kaic_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// A whole conformance run on the default profile, then its teardown.
func ExampleClient_Up() {
	ctx := context.Background()
	printer := progress.NewPrinter(os.Stderr)
	defer printer.Close()
	client := kaic.New(kaic.WithProgress(printer))

	res, err := client.Up(ctx, kaic.RunOptions{Profile: "kind-dra", Dir: "kaic-out/example"})
	var failed *conformance.ChecksFailedError
	switch {
	case errors.As(err, &failed):
		fmt.Println("requirements not met:", failed.IDs)
	case err != nil:
		fmt.Println("the run did not complete:", err)
		return
	}
	fmt.Println("evidence in", res.Dir)
	if err := client.Down(ctx, kaic.DownOptions{Dir: res.Dir}); err != nil {
		fmt.Println("teardown:", err)
	}
}

// What a profile would do, without doing any of it.
func ExampleClient_Plan() {
	pl, err := kaic.New().Plan("kind-dra")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pl.Cluster.Backend, len(pl.Releases) > 0)
	// Output: kind true
}
