package drill

import (
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Timeline is what the drill saw, in order, for a report to draw. Every
// time counts from the deletion.
type Timeline struct {
	// Probes are the reads of the API through the user's endpoint, from
	// the deletion until every node ran a new Ready API server pod.
	Probes []Probe  `json:"probes"`
	Events []Event  `json:"events"`
	Nodes  []string `json:"nodes"`

	active map[serving]bool // checkpoints seen serving
}

// serving names one node's checkpoint of one pod.
type serving struct{ node, parent string }

// Probe is one read of the API.
type Probe struct {
	At Seconds `json:"at"`
	OK bool    `json:"ok"`
}

// EventKind is what happened to one node's API server.
type EventKind string

const (
	// EventDeleted: the drill deleted the node's API server pod.
	EventDeleted EventKind = "deleted"
	// EventCheckpointActive: the node's checkpoint began to serve, by the
	// node's clock.
	EventCheckpointActive EventKind = "checkpoint-active"
	// EventCheckpointSteppedDown: it stopped serving, by the node's clock
	// when the checkpointer still reports it, else when the drill saw it go.
	EventCheckpointSteppedDown EventKind = "checkpoint-stepped-down"
	// EventReady: the drill first saw a new API server pod Ready there.
	EventReady EventKind = "ready"
)

// Event is one thing that happened on one node.
type Event struct {
	At   Seconds   `json:"at"`
	Node string    `json:"node"`
	What EventKind `json:"what"`
	Pod  string    `json:"pod"`
}

func (t *Timeline) probe(at time.Duration, ok bool) {
	t.Probes = append(t.Probes, Probe{At: Seconds(at), OK: ok})
}

func (t *Timeline) event(at time.Duration, node string, what EventKind, pod string) {
	t.Events = append(t.Events, Event{At: Seconds(max(at, 0)), Node: node, What: what, Pod: pod})
}

// observeCheckpoints records when a checkpoint of an old API server pod on
// node began and stopped serving. The checkpointer dates each phase, so a
// read after the fact still gives when it happened.
func (t *Timeline) observeCheckpoints(node string, st checkpoint.NodeStatus, isAPIServer func(parent string) bool, start, now time.Time) {
	if t.active == nil {
		t.active = map[serving]bool{}
	}
	seen := map[serving]bool{}
	for _, cp := range st.Checkpoints {
		if !isAPIServer(cp.Parent) {
			continue
		}
		key := serving{node, cp.Parent}
		seen[key] = true
		switch {
		case cp.Phase == checkpoint.PhaseActive && !t.active[key]:
			t.active[key] = true
			t.event(cp.Since.Sub(start), node, EventCheckpointActive, cp.Parent)
		case cp.Phase != checkpoint.PhaseActive && t.active[key]:
			delete(t.active, key)
			at := now.Sub(start)
			if !cp.Since.IsZero() {
				at = cp.Since.Sub(start)
			}
			t.event(at, node, EventCheckpointSteppedDown, cp.Parent)
		}
	}
	for key := range t.active { // gone from the report: removed
		if key.node == node && !seen[key] {
			delete(t.active, key)
			t.event(now.Sub(start), node, EventCheckpointSteppedDown, key.parent)
		}
	}
}
