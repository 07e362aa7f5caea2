package checkpoint

import "time"

// Phase is where a checkpoint is on disk.
type Phase string

const (
	// PhaseNone: the parent is known but has no checkpoint yet.
	PhaseNone Phase = "none"
	// PhaseInactive: the checkpoint waits in the inactive directory.
	PhaseInactive Phase = "inactive"
	// PhaseActive: the checkpoint is a static pod in the kubelet's manifest directory.
	PhaseActive Phase = "active"
	// PhaseRemoved: the checkpoint and its volume copies are gone. Terminal.
	PhaseRemoved Phase = "removed"
)

// Pending names the transition a checkpoint waits for, if any.
type Pending string

const (
	PendingNothing Pending = ""
	// PendingActivate: the parent stopped running here; wait Grace.Activate
	// so that a container restart does not start a checkpoint.
	PendingActivate Pending = "activate"
	// PendingHandOver: the parent is Ready again next to the active checkpoint;
	// wait Grace.HandOver so that the parent proves itself before the
	// checkpoint leaves. This is what makes the port hand-over happen once.
	PendingHandOver Pending = "hand-over"
	// PendingRemove: the API no longer has the parent; wait Grace.Remove to
	// ride out API eventual consistency.
	PendingRemove Pending = "remove"
)

// State of one checkpoint. The zero value is a fresh PhaseNone.
type State struct {
	Phase        Phase     `json:"state"`
	Since        time.Time `json:"since"`
	Pending      Pending   `json:"pending,omitempty"`
	PendingSince time.Time `json:"pendingSince,omitzero"`
}

// Observation is what one reconcile saw about a parent.
type Observation struct {
	// APIUp: the API server answered the parent list.
	APIUp bool
	// ParentInAPI: the API lists the parent on this node. Ignored when the API is down.
	ParentInAPI bool
	// ParentReady: the parent runs here and is Ready (see Reconciler for the exact rule).
	ParentReady bool
	// SuccessorInAPI: the parent is gone and the API lists, on this node, a
	// pod of the same controller in its place (a DaemonSet's new pod after a
	// rollout or a deletion). Only meaningful when the API is up.
	SuccessorInAPI bool
	// SuccessorReady: that successor runs here and is Ready.
	SuccessorReady bool
	// SuccessorCheckpointed: that successor has its own inactive checkpoint
	// here. Until it has, this checkpoint is the only copy that can bring
	// the node's API server back, and it stays.
	SuccessorCheckpointed bool
	// OwnerWantsNode: the parent is gone with no successor here yet, but its
	// controller (a DaemonSet) still exists and still targets this node, so a
	// replacement is coming, however long it takes to be created and
	// scheduled. Only meaningful when the API is up.
	OwnerWantsNode bool
	// Superseded: this node holds a checkpoint of a newer parent of the same
	// owner. Two copies of one API server would split its port between two
	// specs, so only the newest may run.
	Superseded bool
}

// Grace holds the waits of the state machine.
type Grace struct {
	Activate time.Duration
	HandOver time.Duration
	Remove   time.Duration
}

// DefaultGrace: activation is quick, since an outage is costly and, with the
// API down, a parent counts as not Ready only once it fails its own
// readiness probe (one reconcile interval is enough to rule out a blip); the
// hand-over is as short because "Ready here" already means every container
// ran for MinStable and passed probes that only the parent answers (the
// checkpoint serves the node's address alone, see ArgsAnnotation), and for
// every second of it two API servers share the node's CPU; removal rides out
// a rollout's eventual consistency as bootkube's one-minute grace did.
var DefaultGrace = Grace{Activate: 5 * time.Second, HandOver: 5 * time.Second, Remove: time.Minute}

// Step is the whole state machine: the next state of a checkpoint given what
// was observed at now. It is pure.
//
//	none     → inactive   parent in the API and Ready here (a checkpoint only copies a spec that worked)
//	inactive → active     parent not Ready here for Grace.Activate (API up or down)
//	active   → inactive   parent Ready here for Grace.HandOver (API up or down)
//	inactive,
//	active   → removed    API up and the parent absent for Grace.Remove
//
// A parent that the API replaced (its controller runs a successor on this
// node, or still targets the node and has yet to create or schedule one) is
// a rollout or a deletion, not a move: its checkpoint is the last spec that
// worked here, so it stays until the successor proves itself. After every API
// server pod is deleted, the checkpoints serve until the replacements run,
// however long the controller manager and the scheduler take.
//
//	inactive → active     successor not Ready here for Grace.Activate (a crash-looping rollout)
//	inactive → removed    successor Ready and checkpointed here for Grace.Remove
//	active   → removed    successor Ready and checkpointed here for Grace.HandOver
//	active   → inactive   successor Ready here for Grace.HandOver, but with no
//	                      checkpoint of its own: this one stays, the last that can
//	                      bring the node's API server back
//
// While the API is down nothing is removed and a pending removal is dropped:
// the last good copy may be all that can bring the API back.
//
// A superseded checkpoint (a newer one of the same owner is here) never runs:
//
//	inactive → (stays)    where it would activate
//	active   → inactive   at once, unless a Ready successor takes the node
//	                      over as above: the newer checkpoint serves instead
func Step(s State, o Observation, now time.Time, g Grace) State {
	if s.Phase == "" {
		s.Phase = PhaseNone
	}
	gone := o.APIUp && !o.ParentInAPI
	replaced := gone && (o.SuccessorInAPI || o.OwnerWantsNode)
	switch s.Phase {
	case PhaseNone:
		if o.APIUp && o.ParentInAPI && o.ParentReady {
			return State{Phase: PhaseInactive, Since: now}
		}
		return State{Phase: PhaseNone, Since: s.Since}
	case PhaseInactive:
		switch {
		case replaced && o.SuccessorReady && o.SuccessorCheckpointed, o.Superseded && gone:
			return wait(s, PendingRemove, now, g.Remove, PhaseRemoved)
		case o.Superseded, replaced && o.SuccessorReady:
			return settle(s)
		case replaced:
			return wait(s, PendingActivate, now, g.Activate, PhaseActive)
		case gone:
			return wait(s, PendingRemove, now, g.Remove, PhaseRemoved)
		case o.ParentReady:
			return settle(s)
		default:
			return wait(s, PendingActivate, now, g.Activate, PhaseActive)
		}
	case PhaseActive:
		switch {
		case replaced && o.SuccessorReady && o.SuccessorCheckpointed:
			return wait(s, PendingHandOver, now, g.HandOver, PhaseRemoved)
		case replaced && o.SuccessorReady:
			return wait(s, PendingHandOver, now, g.HandOver, PhaseInactive)
		case o.Superseded:
			return State{Phase: PhaseInactive, Since: now}
		case replaced:
			return settle(s)
		case gone:
			return wait(s, PendingRemove, now, g.Remove, PhaseRemoved)
		case o.ParentReady:
			return wait(s, PendingHandOver, now, g.HandOver, PhaseInactive)
		default:
			return settle(s)
		}
	}
	return s // PhaseRemoved is terminal.
}

// wait starts or continues the timer for p and moves to next once it ran for d.
func wait(s State, p Pending, now time.Time, d time.Duration, next Phase) State {
	if s.Pending != p {
		s.Pending, s.PendingSince = p, now
	}
	if now.Sub(s.PendingSince) >= d {
		return State{Phase: next, Since: now}
	}
	return s
}

// settle keeps the phase and cancels any timer.
func settle(s State) State {
	return State{Phase: s.Phase, Since: s.Since}
}
