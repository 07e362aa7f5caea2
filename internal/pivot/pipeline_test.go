package pivot

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
)

// fakeAction is done once executed, like a real step's outcome in the cluster.
type fakeAction struct {
	name     string
	done     bool
	fail     error
	executed int
}

func (a *fakeAction) Name() string                                 { return a.name }
func (a *fakeAction) Done(context.Context, *Context) (bool, error) { return a.done, nil }
func (a *fakeAction) Execute(ctx context.Context, c *Context) error {
	a.executed++
	if a.fail != nil {
		return a.fail
	}
	c.Waiting("something")
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("no per-step timeout")
	}
	a.done = true
	return nil
}

func newContext(out *bytes.Buffer) *Context {
	return &Context{Status: progress.NewStatus(out, false), Options: Options{StepTimeout: time.Minute}}
}

func TestRunSkipsDoneAndResumes(t *testing.T) {
	a, b, c := &fakeAction{name: "a", done: true}, &fakeAction{name: "b", fail: errors.New("boom")}, &fakeAction{name: "c"}
	var out bytes.Buffer
	err := Run(context.Background(), newContext(&out), []Action{a, b, c})
	if err == nil || err.Error() != "b: boom" {
		t.Fatalf("got %v", err)
	}
	if a.executed != 0 || b.executed != 1 || c.executed != 0 {
		t.Errorf("executed a=%d b=%d c=%d", a.executed, b.executed, c.executed)
	}
	// The rerun resumes at b.
	b.fail = nil
	if err := Run(context.Background(), newContext(&out), []Action{a, b, c}); err != nil {
		t.Fatal(err)
	}
	if a.executed != 0 || b.executed != 2 || c.executed != 1 {
		t.Errorf("after resume: a=%d b=%d c=%d", a.executed, b.executed, c.executed)
	}
	// A third run does nothing.
	if err := Run(context.Background(), newContext(&out), []Action{a, b, c}); err != nil || b.executed != 2 || c.executed != 1 {
		t.Errorf("rerun after success executed something: %v", err)
	}
	log := out.String()
	for _, want := range []string{" ✓ a (already done)", " ✗ b", " • b [0s] waiting for something", " ✓ c ["} {
		if !strings.Contains(log, want) {
			t.Errorf("progress lacks %q:\n%s", want, log)
		}
	}
}

func TestPlanChangesNothing(t *testing.T) {
	a, b := &fakeAction{name: "a", done: true}, &fakeAction{name: "b"}
	var out bytes.Buffer
	if err := Plan(context.Background(), newContext(&out), []Action{a, b}); err != nil {
		t.Fatal(err)
	}
	if a.executed+b.executed != 0 {
		t.Error("a dry run executed a step")
	}
	if !strings.Contains(out.String(), " - a: already done") || !strings.Contains(out.String(), " - b: would run") {
		t.Errorf("plan:\n%s", out.String())
	}
}
