package checkpointer

import (
	"context"
	"strings"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// keepSelf keeps the checkpointer's own checkpoint active: it waits on the
// lock and takes over whenever this pod is away, such as after a reboot.
func (r *Reconciler) keepSelf(ctx context.Context, snap *snapshot, key string, st checkpoint.State) error {
	parent, od := snap.byKey[key], snap.onDisk[key]
	var err error
	written := od != nil && od.Inactive
	if snap.apiUp && parent != nil {
		if err = r.refresh(ctx, snap, key); err == nil {
			written = true
		}
	}
	next := st
	if err == nil && written {
		if err = r.apply(r.Namespace, r.Self, checkpoint.PhaseActive, od); err == nil && st.Phase != checkpoint.PhaseActive {
			next = checkpoint.State{Phase: checkpoint.PhaseActive, Since: snap.now}
		}
	}
	r.record(key, st, next, checkpoint.Observation{APIUp: snap.apiUp, ParentInAPI: parent != nil, ParentReady: true})
	r.noteErr(key, "own checkpoint not up to date", err)
	return err
}

// daemonSetGoneFor is how long the API has said, without a break, that the
// checkpointer's DaemonSet is gone. Any doubt resets it: tearing down is final.
func (r *Reconciler) daemonSetGoneFor(ctx context.Context, snap *snapshot) time.Duration {
	gone := false
	if snap.apiUp && r.DaemonSet != "" {
		var err error
		if gone, err = r.API.DaemonSetGone(ctx); err != nil {
			r.count(errAPI)
			gone = false
		}
	}
	if !gone {
		r.dsGoneSince = time.Time{}
		return -1
	}
	if r.dsGoneSince.IsZero() {
		r.dsGoneSince = snap.now
		r.Log.Info("the checkpointer DaemonSet is gone; removing every checkpoint after the grace period", "daemonSet", r.DaemonSet, "grace", r.Grace.Remove)
	}
	return snap.now.Sub(r.dsGoneSince)
}

// teardown removes every checkpoint, the checkpointer's own last: removing
// its active manifest is what makes the kubelet stop this process.
func (r *Reconciler) teardown(ctx context.Context, snap *snapshot) error {
	self := Key(r.Namespace, r.Self)
	keys := map[string]bool{}
	addKeys(keys, snap.onDisk)
	addKeys(keys, r.states)
	var errs []error
	remove := func(key string) {
		ns, name, _ := strings.Cut(key, "/")
		from := r.states[key]
		if from.Phase == "" {
			from = stateFromDisk(snap.onDisk[key], snap.now)
		}
		if err := r.Store.Remove(ns, name); err != nil {
			r.count(errDisk)
			errs = append(errs, err)
			return
		}
		r.record(key, from, checkpoint.State{Phase: checkpoint.PhaseRemoved, Since: snap.now}, checkpoint.Observation{APIUp: true})
	}
	for _, key := range sorted(keys) {
		if key != self {
			remove(key)
		}
	}
	if len(errs) > 0 {
		return joinErrs(errs) // keep our own checkpoint until the others are gone
	}
	r.clearStatus(ctx)
	if keys[self] {
		remove(self)
	}
	r.updateGauges()
	return joinErrs(errs)
}

// daemonSetCopyRuns reports, for the static copy only, whether a pod of the
// DaemonSet runs here. Its name is <DaemonSet>-xxxxx and it is no checkpoint.
func (r *Reconciler) daemonSetCopyRuns(local []LocalPod) bool {
	if r.PodName == r.Self || r.DaemonSet == "" {
		return false // this is the DaemonSet copy
	}
	for _, p := range local {
		if p.Namespace != r.Namespace || !p.Ready || !strings.HasPrefix(p.Name, r.DaemonSet+"-") ||
			checkpoint.ParentName(p.Annotations) != "" || p.Annotations[checkpoint.ConfigSourceAnnotation] == "file" {
			continue
		}
		for _, c := range p.Containers {
			if c.Running {
				return true
			}
		}
	}
	return false
}
