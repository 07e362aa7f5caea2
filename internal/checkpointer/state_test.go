package checkpointer

import (
	"testing"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// TestDefaultHandOverNeedsFiveSecondsOfReady runs the shipped defaults at the
// interval of a busy node: a returning parent takes the node back once it
// has been Ready for five seconds of observations, and a flap in between
// starts the wait over.
func TestDefaultHandOverNeedsFiveSecondsOfReady(t *testing.T) {
	ready := checkpoint.Observation{APIUp: true, ParentInAPI: true, ParentReady: true}
	tick := func(i int) time.Time { return testNow.Add(time.Duration(i) * DefaultBusyInterval) }
	s := checkpoint.State{Phase: checkpoint.PhaseActive, Since: tick(-10)}
	for i := range 5 {
		if s = checkpoint.Step(s, ready, tick(i), checkpoint.DefaultGrace); s.Phase != checkpoint.PhaseActive || s.Pending != checkpoint.PendingHandOver {
			t.Fatalf("on Ready observation %d got %+v, want active waiting to hand over", i+1, s)
		}
	}
	if got := checkpoint.Step(s, ready, tick(5), checkpoint.DefaultGrace); got.Phase != checkpoint.PhaseInactive {
		t.Fatalf("after five seconds of Ready got %s, want inactive", got.Phase)
	}
	s = checkpoint.Step(s, checkpoint.Observation{APIUp: true, ParentInAPI: true}, tick(5), checkpoint.DefaultGrace)
	s = checkpoint.Step(s, ready, tick(6), checkpoint.DefaultGrace)
	if s.Phase != checkpoint.PhaseActive || !s.PendingSince.Equal(tick(6)) {
		t.Fatalf("after a flap got %+v, want active waiting from the next Ready observation", s)
	}
	if got := checkpoint.Step(s, ready, tick(10), checkpoint.DefaultGrace); got.Phase != checkpoint.PhaseActive {
		t.Fatalf("four seconds after the flap got %s, want still active", got.Phase)
	}
	if got := checkpoint.Step(s, ready, tick(11), checkpoint.DefaultGrace); got.Phase != checkpoint.PhaseInactive {
		t.Fatalf("five seconds of Ready after the flap got %s, want inactive", got.Phase)
	}
}
