package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/progress"
)

func ExampleRunner() {
	dir, _ := os.MkdirTemp("", "kaic-run-")
	defer os.RemoveAll(dir)

	// A fake clock that only the phases move keeps the output stable.
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	printer := progress.NewPrinter(os.Stdout, progress.WithMode(progress.ModePlain))
	defer printer.Close()
	runner := &pipeline.Runner{
		Dir:         dir,
		KaicVersion: "v0.1.0",
		Profile:     pipeline.ProfileRef{Name: "kind-dra", Digest: pipeline.ProfileDigest([]byte("resolved profile"))},
		Progress:    printer,
		Now:         clock,
		Phases: []pipeline.Phase{
			{Name: pipeline.PhaseProvision, Run: func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
				now = now.Add(90 * time.Second) // creating the cluster
				return pipeline.Outputs{"kubeconfig": rc.Dir + "/kubeconfig"}, nil
			}},
			{Name: pipeline.PhaseInstall, Run: func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
				if _, err := rc.RequireOutput(pipeline.PhaseProvision, "kubeconfig"); err != nil {
					return nil, err
				}
				now = now.Add(5 * time.Minute)
				return nil, errors.New("kueue: not ready")
			}},
		},
	}
	_, err := runner.Run(context.Background())
	fmt.Println("error:", err, "| interrupted:", errors.Is(err, pipeline.ErrInterrupted))

	// kaic up --resume: provision is skipped, install runs again.
	runner.Resume = true
	runner.Phases[1].Run = func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
		now = now.Add(42 * time.Second)
		return nil, nil
	}
	state, err := runner.Run(context.Background())
	fmt.Println("error:", err, "| install:", state.Phase(pipeline.PhaseInstall).Status)

	// Output:
	// 2026-05-01T10:00:00Z [provision] started
	// 2026-05-01T10:01:30Z [provision] succeeded (1m30s)
	// 2026-05-01T10:01:30Z [install] started
	// 2026-05-01T10:06:30Z [install] failed (5m00s): kueue: not ready
	// error: phase install failed: kueue: not ready | interrupted: false
	// 2026-05-01T10:06:30Z [provision] skipped: already succeeded
	// 2026-05-01T10:06:30Z [install] started
	// 2026-05-01T10:07:12Z [install] succeeded (42.0s)
	// error: <nil> | install: succeeded
}
