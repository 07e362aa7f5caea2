// Package steps runs a long operation as a list of small actions, each of
// which can tell whether the cluster already has its outcome: a rerun after
// success does nothing, and a rerun after an interruption resumes.
package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
)

// Action is one step, run against a context of type C.
type Action[C any] interface {
	// Name is what the progress output shows.
	Name() string
	// Done reports whether the outcome already holds.
	Done(ctx context.Context, c C) (bool, error)
	// Execute performs the step and waits until its outcome holds.
	Execute(ctx context.Context, c C) error
}

// Run executes the actions in order, skipping those already done. Each
// action gets its own timeout; running is told which step runs, so that
// the action can say what it waits on.
func Run[C any](ctx context.Context, status *progress.Status, timeout time.Duration, c C, actions []Action[C], running func(*progress.Step)) error {
	for _, a := range actions {
		step := status.Start(a.Name())
		done, err := a.Done(ctx, c)
		if err != nil {
			step.End(err)
			return fmt.Errorf("%s: %w", a.Name(), err)
		}
		if done {
			step.Skip("already done")
			continue
		}
		running(step)
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = a.Execute(actx, c)
		cancel()
		step.End(err)
		if err != nil {
			return fmt.Errorf("%s: %w", a.Name(), err)
		}
	}
	return nil
}

// Plan reports, without changing anything, which actions would run.
func Plan[C any](ctx context.Context, status *progress.Status, c C, actions []Action[C]) error {
	for _, a := range actions {
		done, err := a.Done(ctx, c)
		if err != nil {
			return fmt.Errorf("%s: %w", a.Name(), err)
		}
		state := "would run"
		if done {
			state = "already done"
		}
		status.Plan(a.Name(), state)
	}
	return nil
}
