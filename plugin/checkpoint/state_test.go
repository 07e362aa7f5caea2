package checkpoint_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointtest"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

var testGrace = checkpoint.Grace{Activate: 10 * time.Second, HandOver: 30 * time.Second, Remove: time.Minute}

const expired, run = true, false

func TestTransitionTableIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, tr := range checkpointtest.Transitions {
		seen[fmt.Sprint(tr.From, tr.APIUp, tr.InAPI, tr.Ready, tr.Expired)] = true
	}
	if len(seen) != 3*2*2*2*2 || len(checkpointtest.Transitions) != len(seen) {
		t.Fatalf("the table has %d rows and %d distinct cases; want 48 of each", len(checkpointtest.Transitions), len(seen))
	}
}

func TestStep(t *testing.T) {
	for _, tr := range checkpointtest.Transitions {
		t.Run(tr.String(), func(t *testing.T) {
			start := tr.Start()
			got := checkpoint.Step(start, tr.Observation(), checkpointtest.Now, testGrace)
			if got.Phase != tr.Want || got.Pending != tr.WantPending {
				t.Fatalf("Step = %s(%s), want %s(%s)", got.Phase, got.Pending, tr.Want, tr.WantPending)
			}
			switch {
			case got.Phase != start.Phase:
				if !got.Since.Equal(checkpointtest.Now) || !got.PendingSince.IsZero() {
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
	s := checkpoint.State{Phase: checkpoint.PhaseInactive, Pending: checkpoint.PendingRemove, PendingSince: checkpointtest.Now.Add(-time.Hour)}
	got := checkpoint.Step(s, checkpoint.Observation{APIUp: true, ParentInAPI: true, ParentReady: false}, checkpointtest.Now, testGrace)
	if got.Phase != checkpoint.PhaseInactive || got.Pending != checkpoint.PendingActivate || !got.PendingSince.Equal(checkpointtest.Now) {
		t.Fatalf("got %+v, want inactive waiting to activate from now", got)
	}
	got = checkpoint.Step(got, checkpoint.Observation{APIUp: true, ParentInAPI: true}, checkpointtest.Now.Add(testGrace.Activate), testGrace)
	if got.Phase != checkpoint.PhaseActive {
		t.Fatalf("after the activation grace got %s, want active", got.Phase)
	}
}

func TestStepRemovedIsTerminal(t *testing.T) {
	for _, o := range []checkpoint.Observation{{}, {APIUp: true, ParentInAPI: true, ParentReady: true}} {
		if got := checkpoint.Step(checkpoint.State{Phase: checkpoint.PhaseRemoved}, o, checkpointtest.Now, testGrace); got.Phase != checkpoint.PhaseRemoved {
			t.Fatalf("removed moved to %s on %+v", got.Phase, o)
		}
	}
}

func TestStepZeroValueIsNone(t *testing.T) {
	if got := checkpoint.Step(checkpoint.State{}, checkpoint.Observation{APIUp: true}, checkpointtest.Now, testGrace); got.Phase != checkpoint.PhaseNone {
		t.Fatalf("zero state became %s, want none", got.Phase)
	}
}

// successor is how the successor of a replaced parent runs on the node.
type successor int

const (
	crashLooping        successor = iota // not Ready
	readyUncheckpointed                  // Ready, with no checkpoint of its own (yet, or ever)
	readyCheckpointed                    // Ready, with its own inactive checkpoint
)

func (s successor) String() string {
	return [...]string{"crash-looping", "ready-uncheckpointed", "ready-checkpointed"}[s]
}

// replacedTransitions: the API is up and no longer has the parent, but lists
// a successor from the same controller on this node. Whether the parent
// still runs here does not matter: each row holds for both.
var replacedTransitions = []struct {
	from        checkpoint.Phase
	pending     checkpoint.Pending
	successor   successor
	expired     bool
	want        checkpoint.Phase
	wantPending checkpoint.Pending
}{
	{checkpoint.PhaseNone, checkpoint.PendingNothing, crashLooping, run, checkpoint.PhaseNone, ""},
	{checkpoint.PhaseNone, checkpoint.PendingNothing, readyCheckpointed, run, checkpoint.PhaseNone, ""},
	// A successor that does not run (a bad rollout) makes the last good spec take over.
	{checkpoint.PhaseInactive, checkpoint.PendingActivate, crashLooping, run, checkpoint.PhaseInactive, checkpoint.PendingActivate},
	{checkpoint.PhaseInactive, checkpoint.PendingActivate, crashLooping, expired, checkpoint.PhaseActive, ""},
	{checkpoint.PhaseInactive, checkpoint.PendingRemove, crashLooping, expired, checkpoint.PhaseInactive, checkpoint.PendingActivate}, // a removal timer never activates
	// A Ready successor gets its own checkpoint; the old one goes after the removal grace.
	{checkpoint.PhaseInactive, checkpoint.PendingRemove, readyCheckpointed, run, checkpoint.PhaseInactive, checkpoint.PendingRemove},
	{checkpoint.PhaseInactive, checkpoint.PendingRemove, readyCheckpointed, expired, checkpoint.PhaseRemoved, ""},
	// Until it has one, the old checkpoint is the node's only way back: it stays, and does not run.
	{checkpoint.PhaseInactive, checkpoint.PendingRemove, readyUncheckpointed, expired, checkpoint.PhaseInactive, ""},
	{checkpoint.PhaseInactive, checkpoint.PendingActivate, readyUncheckpointed, expired, checkpoint.PhaseInactive, ""},
	// An active checkpoint serves until the successor has been Ready for the hand-over grace.
	{checkpoint.PhaseActive, checkpoint.PendingRemove, crashLooping, run, checkpoint.PhaseActive, ""},
	{checkpoint.PhaseActive, checkpoint.PendingRemove, crashLooping, expired, checkpoint.PhaseActive, ""}, // never removed under a crash-looping successor
	{checkpoint.PhaseActive, checkpoint.PendingHandOver, readyCheckpointed, run, checkpoint.PhaseActive, checkpoint.PendingHandOver},
	{checkpoint.PhaseActive, checkpoint.PendingHandOver, readyCheckpointed, expired, checkpoint.PhaseRemoved, ""},
	{checkpoint.PhaseActive, checkpoint.PendingRemove, readyCheckpointed, expired, checkpoint.PhaseActive, checkpoint.PendingHandOver}, // a removal timer is not a hand-over
	// It hands the node to a successor with no checkpoint of its own, and stays on disk.
	{checkpoint.PhaseActive, checkpoint.PendingHandOver, readyUncheckpointed, run, checkpoint.PhaseActive, checkpoint.PendingHandOver},
	{checkpoint.PhaseActive, checkpoint.PendingHandOver, readyUncheckpointed, expired, checkpoint.PhaseInactive, ""},
}

func TestStepKeepsTheLastGoodSpecUntilASuccessorIsReady(t *testing.T) {
	for _, tr := range replacedTransitions {
		for _, parentReady := range []bool{false, true} {
			name := fmt.Sprintf("%s(%s)/successor=%s/expired=%t/parentReady=%t", tr.from, tr.pending, tr.successor, tr.expired, parentReady)
			t.Run(name, func(t *testing.T) {
				start := checkpointtest.Transition{From: tr.from, Pending: tr.pending, Expired: tr.expired}.Start()
				o := checkpoint.Observation{APIUp: true, ParentReady: parentReady, SuccessorInAPI: true,
					SuccessorReady: tr.successor != crashLooping, SuccessorCheckpointed: tr.successor == readyCheckpointed}
				got := checkpoint.Step(start, o, checkpointtest.Now, testGrace)
				if got.Phase != tr.want || got.Pending != tr.wantPending {
					t.Fatalf("Step = %s(%s), want %s(%s)", got.Phase, got.Pending, tr.want, tr.wantPending)
				}
			})
		}
	}
}

// A superseded checkpoint never runs, whatever else holds: a newer one of
// the same owner serves instead. Removal still follows the API.
func TestStepSupersededNeverRuns(t *testing.T) {
	start := func(p checkpoint.Phase, pending checkpoint.Pending) checkpoint.State {
		return checkpointtest.Transition{From: p, Pending: pending, Expired: true}.Start()
	}
	for _, tc := range []struct {
		name  string
		from  checkpoint.State
		obs   checkpoint.Observation
		want  checkpoint.Phase
		timer checkpoint.Pending
	}{
		{"inactive, API down, parent not here", start(checkpoint.PhaseInactive, checkpoint.PendingActivate), checkpoint.Observation{}, checkpoint.PhaseInactive, ""},
		{"inactive, successor crash-looping: waits to be removed, not to run", start(checkpoint.PhaseInactive, checkpoint.PendingActivate),
			checkpoint.Observation{APIUp: true, SuccessorInAPI: true}, checkpoint.PhaseInactive, checkpoint.PendingRemove},
		{"inactive, parent gone from the API", start(checkpoint.PhaseInactive, checkpoint.PendingRemove),
			checkpoint.Observation{APIUp: true}, checkpoint.PhaseRemoved, ""},
		{"active, API down", start(checkpoint.PhaseActive, checkpoint.PendingNothing), checkpoint.Observation{}, checkpoint.PhaseInactive, ""},
		{"active, parent Ready", start(checkpoint.PhaseActive, checkpoint.PendingNothing),
			checkpoint.Observation{APIUp: true, ParentInAPI: true, ParentReady: true}, checkpoint.PhaseInactive, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.obs.Superseded = true
			got := checkpoint.Step(tc.from, tc.obs, checkpointtest.Now, testGrace)
			if got.Phase != tc.want || got.Pending != tc.timer {
				t.Fatalf("Step = %s(%s), want %s(%s)", got.Phase, got.Pending, tc.want, tc.timer)
			}
		})
	}
}

// A parent gone from the API whose DaemonSet still wants a pod on the node
// is being replaced, however long the replacement takes: its checkpoint
// serves, or starts, as under a crash-looping successor. Only an owner that
// no longer wants the node lets the checkpoint go.
func TestStepWaitsForTheOwnersReplacement(t *testing.T) {
	for _, tc := range []struct {
		name        string
		from        checkpoint.Phase
		pending     checkpoint.Pending
		expired     bool
		ownerWants  bool
		want        checkpoint.Phase
		wantPending checkpoint.Pending
	}{
		{"active: serves on", checkpoint.PhaseActive, checkpoint.PendingRemove, expired, true, checkpoint.PhaseActive, ""},
		{"inactive: starts after the activation grace", checkpoint.PhaseInactive, checkpoint.PendingActivate, expired, true, checkpoint.PhaseActive, ""},
		{"inactive: waits for the activation grace", checkpoint.PhaseInactive, checkpoint.PendingActivate, run, true, checkpoint.PhaseInactive, checkpoint.PendingActivate},
		{"active, owner gone: removed after the grace", checkpoint.PhaseActive, checkpoint.PendingRemove, expired, false, checkpoint.PhaseRemoved, ""},
		{"inactive, owner gone: removed after the grace", checkpoint.PhaseInactive, checkpoint.PendingRemove, expired, false, checkpoint.PhaseRemoved, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := checkpointtest.Transition{From: tc.from, Pending: tc.pending, Expired: tc.expired}.Start()
			o := checkpoint.Observation{APIUp: true, OwnerWantsNode: tc.ownerWants}
			got := checkpoint.Step(start, o, checkpointtest.Now, testGrace)
			if got.Phase != tc.want || got.Pending != tc.wantPending {
				t.Fatalf("Step = %s(%s), want %s(%s)", got.Phase, got.Pending, tc.want, tc.wantPending)
			}
		})
	}
}

// A successor Ready and checkpointed here takes over from an active
// checkpoint after the hand-over grace, as always, though its checkpoint
// makes this one superseded: the grace is what keeps a flapping parent from
// ping-ponging the port.
func TestStepSupersededStillHandsOver(t *testing.T) {
	start := checkpointtest.Transition{From: checkpoint.PhaseActive, Pending: checkpoint.PendingNothing}.Start()
	o := checkpoint.Observation{APIUp: true, SuccessorInAPI: true, SuccessorReady: true, SuccessorCheckpointed: true, Superseded: true}
	got := checkpoint.Step(start, o, checkpointtest.Now, testGrace)
	if got.Phase != checkpoint.PhaseActive || got.Pending != checkpoint.PendingHandOver {
		t.Fatalf("Step = %s(%s), want active(hand-over)", got.Phase, got.Pending)
	}
	if got = checkpoint.Step(got, o, checkpointtest.Now.Add(testGrace.HandOver), testGrace); got.Phase != checkpoint.PhaseRemoved {
		t.Fatalf("after the hand-over grace Step = %s, want removed", got.Phase)
	}
}
