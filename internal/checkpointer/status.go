package checkpointer

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Status returns what this reconciler would publish.
func (r *Reconciler) Status(now time.Time) checkpoint.NodeStatus {
	st := checkpoint.NodeStatus{Node: r.Node, Pod: r.PodName, Updated: now, Checkpoints: []checkpoint.CheckpointStatus{}}
	for _, k := range slices.Sorted(maps.Keys(r.states)) {
		_, name, _ := strings.Cut(k, "/")
		st.Checkpoints = append(st.Checkpoints, checkpoint.CheckpointStatus{Parent: name, State: r.states[k]})
	}
	return st
}

// publish sends the status when it changed, and at least every HeartbeatEvery.
func (r *Reconciler) publish(ctx context.Context, now time.Time) {
	st := r.Status(now)
	st.Updated = time.Time{}
	b, _ := json.Marshal(st)
	if bytes.Equal(b, r.lastStatus) && now.Sub(r.lastPublished) < r.HeartbeatEvery {
		return
	}
	st.Updated = now
	if err := r.API.PublishStatus(ctx, st); err != nil {
		r.count(errStatus)
		r.Log.Warn("cannot publish status", "err", err)
		return
	}
	r.lastStatus, r.lastPublished = b, now
}

// clearStatus drops this node's entry, best effort, before the last checkpoint goes.
func (r *Reconciler) clearStatus(ctx context.Context) {
	if c, ok := r.API.(interface {
		ClearStatus(context.Context) error
	}); ok {
		if err := c.ClearStatus(ctx); err != nil {
			r.Log.Warn("cannot clear status", "err", err)
		}
	}
}

func (r *Reconciler) updateGauges() {
	counts := map[checkpoint.Phase]int{checkpoint.PhaseNone: 0, checkpoint.PhaseInactive: 0, checkpoint.PhaseActive: 0}
	for _, s := range r.states {
		counts[s.Phase]++
	}
	for p, n := range counts {
		r.Metrics.checkpoints.WithLabelValues(string(p)).Set(float64(n))
	}
}

func (r *Reconciler) noteAPI(up bool, err error) {
	r.noteRefused(err)
	if up {
		r.Metrics.apiUp.Set(1)
	} else {
		r.Metrics.apiUp.Set(0)
		r.count(errAPI)
	}
	if r.apiWasUp == nil || *r.apiWasUp != up {
		if up {
			r.Log.Info("API server reachable")
		} else if !refused(err) {
			r.Log.Warn("API server unreachable; acting on local state only", "err", err)
		}
		r.apiWasUp = &up
	}
}

// refused says whether the API server answered but would not accept this
// checkpointer's token (401) or its permissions (403).
func refused(err error) bool {
	return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
}

// noteRefused keeps an API server that refuses our credentials apart from
// one that is down: it answers, so nothing on disk is wrong, but nothing is
// removed or torn down while it refuses, so the pod goes unready, the metric
// says so and the log names the cause.
func (r *Reconciler) noteRefused(err error) {
	cause := ""
	if refused(err) {
		cause = err.Error()
		r.Metrics.credentialsRefused.Set(1)
	} else {
		r.Metrics.credentialsRefused.Set(0)
	}
	if old := r.refusedCause.Swap(&cause); old == nil || (*old == "") != (cause == "") {
		if cause != "" {
			r.Log.Error("the API server refuses this checkpointer's credentials; no checkpoint is removed or torn down until it accepts them", "err", err)
		} else if old != nil {
			r.Log.Info("the API server accepts this checkpointer's credentials again")
		}
	}
}

// CredentialsRefused is why the API server refused the last request, or "".
func (r *Reconciler) CredentialsRefused() string {
	if c := r.refusedCause.Load(); c != nil {
		return *c
	}
	return ""
}

// LastSuccess is when a reconcile last completed without error.
func (r *Reconciler) LastSuccess() time.Time {
	n := r.lastSuccess.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (r *Reconciler) count(kind string) { r.Metrics.errors.WithLabelValues(kind).Inc() }
