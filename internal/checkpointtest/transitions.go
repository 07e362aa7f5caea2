package checkpointtest

import (
	"fmt"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Now is the instant the table's timers count back from.
var Now = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

// Transition is one row of the state machine's specification. The start state
// is phase from, with timer pending started either 5s ago (no grace expired)
// or 61s ago (every grace expired). For an observation that runs no timer of
// its own, the start carries a stale timer of another kind, which must be
// dropped without effect.
type Transition struct {
	From                checkpoint.Phase
	Pending             checkpoint.Pending
	APIUp, InAPI, Ready bool
	Expired             bool
	Want                checkpoint.Phase
	WantPending         checkpoint.Pending
}

func (tr Transition) String() string {
	return fmt.Sprintf("%s(%s)/api=%t/inAPI=%t/ready=%t/expired=%t", tr.From, tr.Pending, tr.APIUp, tr.InAPI, tr.Ready, tr.Expired)
}

// The table's words for its columns.
const (
	up, down     = true, false
	in, absent   = true, false
	ready, dead  = true, false
	expired, run = true, false

	none, inactive, active, removed     = checkpoint.PhaseNone, checkpoint.PhaseInactive, checkpoint.PhaseActive, checkpoint.PhaseRemoved
	nothing, activate, handOver, remove = checkpoint.PendingNothing, checkpoint.PendingActivate, checkpoint.PendingHandOver, checkpoint.PendingRemove
)

// Transitions lists every combination of API up/down × parent in the API or
// not × parent Ready here or not × grace expired or not, for each phase.
var Transitions = []Transition{
	// none: only a parent that is in the API and Ready here gets a checkpoint.
	{none, nothing, up, in, ready, run, inactive, ""},
	{none, nothing, up, in, ready, expired, inactive, ""},
	{none, nothing, up, in, dead, run, none, ""},
	{none, nothing, up, in, dead, expired, none, ""},
	{none, nothing, up, absent, ready, run, none, ""},
	{none, nothing, up, absent, ready, expired, none, ""},
	{none, nothing, up, absent, dead, run, none, ""},
	{none, nothing, up, absent, dead, expired, none, ""},
	{none, nothing, down, in, ready, run, none, ""},
	{none, nothing, down, in, ready, expired, none, ""},
	{none, nothing, down, in, dead, run, none, ""},
	{none, nothing, down, in, dead, expired, none, ""},
	{none, nothing, down, absent, ready, run, none, ""},
	{none, nothing, down, absent, ready, expired, none, ""},
	{none, nothing, down, absent, dead, run, none, ""},
	{none, nothing, down, absent, dead, expired, none, ""},

	// inactive, API up.
	{inactive, activate, up, in, ready, run, inactive, ""},     // parent back before activation
	{inactive, activate, up, in, ready, expired, inactive, ""}, // Ready wins over an old timer
	{inactive, activate, up, in, dead, run, inactive, activate},
	{inactive, activate, up, in, dead, expired, active, ""},
	{inactive, remove, up, absent, ready, run, inactive, remove},
	{inactive, remove, up, absent, ready, expired, removed, ""},
	{inactive, remove, up, absent, dead, run, inactive, remove},
	{inactive, remove, up, absent, dead, expired, removed, ""},
	// inactive, API down: whether the API had the parent is unknown and ignored.
	{inactive, remove, down, in, ready, run, inactive, ""},
	{inactive, remove, down, in, ready, expired, inactive, ""},
	{inactive, activate, down, in, dead, run, inactive, activate},
	{inactive, activate, down, in, dead, expired, active, ""},
	{inactive, remove, down, absent, ready, run, inactive, ""},
	{inactive, remove, down, absent, ready, expired, inactive, ""}, // no removal while the API is down
	{inactive, activate, down, absent, dead, run, inactive, activate},
	{inactive, activate, down, absent, dead, expired, active, ""},

	// active, API up.
	{active, handOver, up, in, ready, run, active, handOver},
	{active, handOver, up, in, ready, expired, inactive, ""}, // the one hand-over
	{active, handOver, up, in, dead, run, active, ""},        // parent flapped: start over
	{active, handOver, up, in, dead, expired, active, ""},
	{active, remove, up, absent, ready, run, active, remove},
	{active, remove, up, absent, ready, expired, removed, ""},
	{active, remove, up, absent, dead, run, active, remove},
	{active, remove, up, absent, dead, expired, removed, ""},
	// active, API down.
	{active, handOver, down, in, ready, run, active, handOver},
	{active, handOver, down, in, ready, expired, inactive, ""},
	{active, remove, down, in, dead, run, active, ""},
	{active, remove, down, in, dead, expired, active, ""}, // the API is down: keep serving
	{active, handOver, down, absent, ready, run, active, handOver},
	{active, handOver, down, absent, ready, expired, inactive, ""},
	{active, remove, down, absent, dead, run, active, ""},
	{active, remove, down, absent, dead, expired, active, ""},
}

// Start is the row's start state at Now.
func (tr Transition) Start() checkpoint.State {
	s := checkpoint.State{Phase: tr.From, Since: Now.Add(-time.Hour)}
	if tr.Pending != nothing {
		s.Pending, s.PendingSince = tr.Pending, Now.Add(-5*time.Second)
		if tr.Expired {
			s.PendingSince = Now.Add(-61 * time.Second)
		}
	}
	return s
}

// Observation is the row's observation.
func (tr Transition) Observation() checkpoint.Observation {
	return checkpoint.Observation{APIUp: tr.APIUp, ParentInAPI: tr.InAPI, ParentReady: tr.Ready}
}
