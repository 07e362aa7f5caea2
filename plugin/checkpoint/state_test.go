package checkpoint

import (
	"fmt"
	"testing"
	"time"
)

var testGrace = Grace{Activate: 10 * time.Second, HandOver: 30 * time.Second, Remove: time.Minute}

// transition is one row of the state machine's specification. The start state
// is phase from, with timer pending started either 5s ago (no grace expired)
// or 61s ago (every grace expired). For an observation that runs no timer of
// its own, the start carries a stale timer of another kind, which must be
// dropped without effect.
type transition struct {
	from                Phase
	pending             Pending
	apiUp, inAPI, ready bool
	expired             bool
	want                Phase
	wantPending         Pending
}

func (tr transition) String() string {
	return fmt.Sprintf("%s(%s)/api=%t/inAPI=%t/ready=%t/expired=%t", tr.from, tr.pending, tr.apiUp, tr.inAPI, tr.ready, tr.expired)
}

const (
	up, down     = true, false
	in, absent   = true, false
	ready, dead  = true, false
	expired, run = true, false
)

// transitions lists every combination of API up/down × parent in the API or
// not × parent Ready here or not × grace expired or not, for each phase.
var transitions = []transition{
	// none: only a parent that is in the API and Ready here gets a checkpoint.
	{PhaseNone, PendingNothing, up, in, ready, run, PhaseInactive, ""},
	{PhaseNone, PendingNothing, up, in, ready, expired, PhaseInactive, ""},
	{PhaseNone, PendingNothing, up, in, dead, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, up, in, dead, expired, PhaseNone, ""},
	{PhaseNone, PendingNothing, up, absent, ready, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, up, absent, ready, expired, PhaseNone, ""},
	{PhaseNone, PendingNothing, up, absent, dead, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, up, absent, dead, expired, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, in, ready, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, in, ready, expired, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, in, dead, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, in, dead, expired, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, absent, ready, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, absent, ready, expired, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, absent, dead, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, down, absent, dead, expired, PhaseNone, ""},

	// inactive, API up.
	{PhaseInactive, PendingActivate, up, in, ready, run, PhaseInactive, ""},     // parent back before activation
	{PhaseInactive, PendingActivate, up, in, ready, expired, PhaseInactive, ""}, // Ready wins over an old timer
	{PhaseInactive, PendingActivate, up, in, dead, run, PhaseInactive, PendingActivate},
	{PhaseInactive, PendingActivate, up, in, dead, expired, PhaseActive, ""},
	{PhaseInactive, PendingRemove, up, absent, ready, run, PhaseInactive, PendingRemove},
	{PhaseInactive, PendingRemove, up, absent, ready, expired, PhaseRemoved, ""},
	{PhaseInactive, PendingRemove, up, absent, dead, run, PhaseInactive, PendingRemove},
	{PhaseInactive, PendingRemove, up, absent, dead, expired, PhaseRemoved, ""},
	// inactive, API down: whether the API had the parent is unknown and ignored.
	{PhaseInactive, PendingRemove, down, in, ready, run, PhaseInactive, ""},
	{PhaseInactive, PendingRemove, down, in, ready, expired, PhaseInactive, ""},
	{PhaseInactive, PendingActivate, down, in, dead, run, PhaseInactive, PendingActivate},
	{PhaseInactive, PendingActivate, down, in, dead, expired, PhaseActive, ""},
	{PhaseInactive, PendingRemove, down, absent, ready, run, PhaseInactive, ""},
	{PhaseInactive, PendingRemove, down, absent, ready, expired, PhaseInactive, ""}, // no removal while the API is down
	{PhaseInactive, PendingActivate, down, absent, dead, run, PhaseInactive, PendingActivate},
	{PhaseInactive, PendingActivate, down, absent, dead, expired, PhaseActive, ""},

	// active, API up.
	{PhaseActive, PendingHandOver, up, in, ready, run, PhaseActive, PendingHandOver},
	{PhaseActive, PendingHandOver, up, in, ready, expired, PhaseInactive, ""}, // the one hand-over
	{PhaseActive, PendingHandOver, up, in, dead, run, PhaseActive, ""},        // parent flapped: start over
	{PhaseActive, PendingHandOver, up, in, dead, expired, PhaseActive, ""},
	{PhaseActive, PendingRemove, up, absent, ready, run, PhaseActive, PendingRemove},
	{PhaseActive, PendingRemove, up, absent, ready, expired, PhaseRemoved, ""},
	{PhaseActive, PendingRemove, up, absent, dead, run, PhaseActive, PendingRemove},
	{PhaseActive, PendingRemove, up, absent, dead, expired, PhaseRemoved, ""},
	// active, API down.
	{PhaseActive, PendingHandOver, down, in, ready, run, PhaseActive, PendingHandOver},
	{PhaseActive, PendingHandOver, down, in, ready, expired, PhaseInactive, ""},
	{PhaseActive, PendingRemove, down, in, dead, run, PhaseActive, ""},
	{PhaseActive, PendingRemove, down, in, dead, expired, PhaseActive, ""}, // the API is down: keep serving
	{PhaseActive, PendingHandOver, down, absent, ready, run, PhaseActive, PendingHandOver},
	{PhaseActive, PendingHandOver, down, absent, ready, expired, PhaseInactive, ""},
	{PhaseActive, PendingRemove, down, absent, dead, run, PhaseActive, ""},
	{PhaseActive, PendingRemove, down, absent, dead, expired, PhaseActive, ""},
}

var testNow = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func (tr transition) start() State {
	s := State{Phase: tr.from, Since: testNow.Add(-time.Hour)}
	if tr.pending != PendingNothing {
		s.Pending, s.PendingSince = tr.pending, testNow.Add(-5*time.Second)
		if tr.expired {
			s.PendingSince = testNow.Add(-61 * time.Second)
		}
	}
	return s
}

func (tr transition) observation() Observation {
	return Observation{APIUp: tr.apiUp, ParentInAPI: tr.inAPI, ParentReady: tr.ready}
}

func TestTransitionTableIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, tr := range transitions {
		seen[fmt.Sprint(tr.from, tr.apiUp, tr.inAPI, tr.ready, tr.expired)] = true
	}
	if len(seen) != 3*2*2*2*2 || len(transitions) != len(seen) {
		t.Fatalf("the table has %d rows and %d distinct cases; want 48 of each", len(transitions), len(seen))
	}
}

func TestStep(t *testing.T) {
	for _, tr := range transitions {
		t.Run(tr.String(), func(t *testing.T) {
			start := tr.start()
			got := Step(start, tr.observation(), testNow, testGrace)
			if got.Phase != tr.want || got.Pending != tr.wantPending {
				t.Fatalf("Step = %s(%s), want %s(%s)", got.Phase, got.Pending, tr.want, tr.wantPending)
			}
			switch {
			case got.Phase != start.Phase:
				if !got.Since.Equal(testNow) || !got.PendingSince.IsZero() {
					t.Errorf("a new phase starts now with no timer; got since %v, timer %v", got.Since, got.PendingSince)
				}
			case got.Pending == start.Pending && got.Pending != "":
				if !got.PendingSince.Equal(start.PendingSince) {
					t.Errorf("a running timer keeps its start; got %v, want %v", got.PendingSince, start.PendingSince)
				}
			}
		})
	}
}

func TestStepRestartsTimerWhenReasonChanges(t *testing.T) {
	// A removal timer that ran a long time must not turn into an activation.
	s := State{Phase: PhaseInactive, Pending: PendingRemove, PendingSince: testNow.Add(-time.Hour)}
	got := Step(s, Observation{APIUp: true, ParentInAPI: true, ParentReady: false}, testNow, testGrace)
	if got.Phase != PhaseInactive || got.Pending != PendingActivate || !got.PendingSince.Equal(testNow) {
		t.Fatalf("got %+v, want inactive waiting to activate from now", got)
	}
	got = Step(got, Observation{APIUp: true, ParentInAPI: true}, testNow.Add(testGrace.Activate), testGrace)
	if got.Phase != PhaseActive {
		t.Fatalf("after the activation grace got %s, want active", got.Phase)
	}
}

// TestDefaultHandOverNeedsFiveSecondsOfReady runs the shipped defaults at the
// interval of a busy node: a returning parent takes the node back once it
// has been Ready for five seconds of observations, and a flap in between
// starts the wait over.
func TestDefaultHandOverNeedsFiveSecondsOfReady(t *testing.T) {
	ready := Observation{APIUp: true, ParentInAPI: true, ParentReady: true}
	tick := func(i int) time.Time { return testNow.Add(time.Duration(i) * DefaultBusyInterval) }
	s := State{Phase: PhaseActive, Since: tick(-10)}
	for i := range 5 {
		if s = Step(s, ready, tick(i), DefaultGrace); s.Phase != PhaseActive || s.Pending != PendingHandOver {
			t.Fatalf("on Ready observation %d got %+v, want active waiting to hand over", i+1, s)
		}
	}
	if got := Step(s, ready, tick(5), DefaultGrace); got.Phase != PhaseInactive {
		t.Fatalf("after five seconds of Ready got %s, want inactive", got.Phase)
	}
	s = Step(s, Observation{APIUp: true, ParentInAPI: true}, tick(5), DefaultGrace)
	s = Step(s, ready, tick(6), DefaultGrace)
	if s.Phase != PhaseActive || !s.PendingSince.Equal(tick(6)) {
		t.Fatalf("after a flap got %+v, want active waiting from the next Ready observation", s)
	}
	if got := Step(s, ready, tick(10), DefaultGrace); got.Phase != PhaseActive {
		t.Fatalf("four seconds after the flap got %s, want still active", got.Phase)
	}
	if got := Step(s, ready, tick(11), DefaultGrace); got.Phase != PhaseInactive {
		t.Fatalf("five seconds of Ready after the flap got %s, want inactive", got.Phase)
	}
}

func TestStepRemovedIsTerminal(t *testing.T) {
	for _, o := range []Observation{{}, {APIUp: true, ParentInAPI: true, ParentReady: true}} {
		if got := Step(State{Phase: PhaseRemoved}, o, testNow, testGrace); got.Phase != PhaseRemoved {
			t.Fatalf("removed moved to %s on %+v", got.Phase, o)
		}
	}
}

func TestStepZeroValueIsNone(t *testing.T) {
	if got := Step(State{}, Observation{APIUp: true}, testNow, testGrace); got.Phase != PhaseNone {
		t.Fatalf("zero state became %s, want none", got.Phase)
	}
}

// replacedTransitions: the API is up and no longer has the parent, but lists
// a successor from the same controller on this node. Whether the parent
// still runs here does not matter: each row holds for both.
var replacedTransitions = []struct {
	from           Phase
	pending        Pending
	successorReady bool
	expired        bool
	want           Phase
	wantPending    Pending
}{
	{PhaseNone, PendingNothing, false, run, PhaseNone, ""},
	{PhaseNone, PendingNothing, true, run, PhaseNone, ""},
	// A successor that does not run (a bad rollout) makes the last good spec take over.
	{PhaseInactive, PendingActivate, false, run, PhaseInactive, PendingActivate},
	{PhaseInactive, PendingActivate, false, expired, PhaseActive, ""},
	{PhaseInactive, PendingRemove, false, expired, PhaseInactive, PendingActivate}, // a removal timer never activates
	// A Ready successor gets its own checkpoint; the old one goes after the removal grace.
	{PhaseInactive, PendingRemove, true, run, PhaseInactive, PendingRemove},
	{PhaseInactive, PendingRemove, true, expired, PhaseRemoved, ""},
	// An active checkpoint serves until the successor has been Ready for the hand-over grace.
	{PhaseActive, PendingRemove, false, run, PhaseActive, ""},
	{PhaseActive, PendingRemove, false, expired, PhaseActive, ""}, // never removed under a crash-looping successor
	{PhaseActive, PendingHandOver, true, run, PhaseActive, PendingHandOver},
	{PhaseActive, PendingHandOver, true, expired, PhaseRemoved, ""},
	{PhaseActive, PendingRemove, true, expired, PhaseActive, PendingHandOver}, // a removal timer is not a hand-over
}

func TestStepKeepsTheLastGoodSpecUntilASuccessorIsReady(t *testing.T) {
	for _, tr := range replacedTransitions {
		for _, parentReady := range []bool{false, true} {
			name := fmt.Sprintf("%s(%s)/successorReady=%t/expired=%t/parentReady=%t", tr.from, tr.pending, tr.successorReady, tr.expired, parentReady)
			t.Run(name, func(t *testing.T) {
				start := transition{from: tr.from, pending: tr.pending, expired: tr.expired}.start()
				o := Observation{APIUp: true, ParentReady: parentReady, SuccessorInAPI: true, SuccessorReady: tr.successorReady}
				got := Step(start, o, testNow, testGrace)
				if got.Phase != tr.want || got.Pending != tr.wantPending {
					t.Fatalf("Step = %s(%s), want %s(%s)", got.Phase, got.Pending, tr.want, tr.wantPending)
				}
			})
		}
	}
}
