package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Store is the disk as the reconciler sees it; Disk implements it.
type Store interface {
	List() (map[string]*OnDisk, error)
	WriteInactive(pod *corev1.Pod) (bool, error)
	Activate(namespace, name string) error
	Deactivate(namespace, name string) error
	Remove(namespace, name string) error
	WriteVolume(dir string, files map[string]checkpoint.File, uid, gid int64) (bool, error)
	CleanTemp() (int, error)
}

// Reconciler runs one node's checkpoints. It gathers what the runtime, the
// API and the disk say, asks Step what to do, and does it. Only one
// reconciler per node may run at a time; Run holds the lock for it.
type Reconciler struct {
	Runtime Runtime
	API     API
	Store   Store
	Metrics *Metrics
	Log     *slog.Logger
	Clock   clock.PassiveClock // read once a pass: every decision of the pass uses that instant

	Namespace string
	Node      string
	PodName   string // this process's pod, for the status
	Self      string // the checkpointer's parent pod: its own checkpoint is always active
	DaemonSet string // the checkpointer's DaemonSet; its pods are named DaemonSet-xxxxx
	SecretDir string // root of the volume copies

	Grace checkpoint.Grace
	// MinStable is how long every container of a parent must have run before
	// the parent counts as running here.
	MinStable time.Duration
	// RefreshEvery is how often volume copies are re-read from the API.
	RefreshEvery time.Duration
	// TokenLifetime is how long a kept service-account token lives.
	TokenLifetime time.Duration
	// HeartbeatEvery is how often an unchanged status is published again.
	HeartbeatEvery time.Duration
	// Probe, when set, runs a parent's readiness probes from the node; with
	// the API down a running parent that fails them is not Ready.
	Probe func(*corev1.Pod) bool

	states        map[string]checkpoint.State
	copied        map[string]time.Time
	lastErr       map[string]string // per checkpoint, to log a repeated error once
	dsGoneSince   time.Time
	apiWasUp      *bool
	lastStatus    []byte
	lastPublished time.Time
	lastSuccess   atomic.Int64 // unix nanoseconds
	refusedCause  atomic.Pointer[string]
}

// Result tells Run what to do after a reconcile.
type Result struct {
	// Yield: this is the static copy and a DaemonSet copy runs here; let it act.
	Yield bool
	// TornDown: the DaemonSet is gone and every checkpoint is removed.
	TornDown bool
	// Busy: a checkpoint other than the checkpointer's own waits to activate
	// or to hand over, so the next pass should come soon.
	Busy bool
}

// snapshot is what one pass read from the runtime, the API and the disk,
// with the time it started: every checkpoint of the pass is decided on it.
type snapshot struct {
	now     time.Time
	apiUp   bool
	parents []corev1.Pod           // what the API lists; none while it is down
	byKey   map[string]*corev1.Pod // parents by Key
	local   []LocalPod             // what the runtime runs on this node
	onDisk  map[string]*OnDisk     // checkpoints on disk by Key
}

// Reconcile runs one pass. Without the container runtime it does nothing:
// acting blind could start a second copy of a running pod.
func (r *Reconciler) Reconcile(ctx context.Context) (Result, error) {
	if r.states == nil {
		r.states, r.copied = map[string]checkpoint.State{}, map[string]time.Time{}
	}
	if r.lastErr == nil {
		r.lastErr = map[string]string{}
	}
	now := r.Clock.Now()
	if n, err := r.Store.CleanTemp(); err != nil {
		r.count(errDisk)
		r.Log.Warn("cannot clean leftover temporary files", "err", err)
	} else if n > 0 {
		r.Log.Info("removed leftover temporary files", "count", n)
	}
	snap, err := r.observe(ctx, now)
	if err != nil {
		return Result{}, err
	}

	if r.daemonSetGoneFor(ctx, snap) >= r.Grace.Remove {
		return Result{TornDown: true}, r.teardown(ctx, snap)
	}

	keys := map[string]bool{}
	addKeys(keys, snap.byKey)
	addKeys(keys, snap.onDisk)
	addKeys(keys, r.states)
	var errs []error
	for _, key := range sorted(keys) {
		if err := r.reconcileOne(ctx, snap, key); err != nil {
			errs = append(errs, err)
		}
	}
	if snap.apiUp {
		r.publish(ctx, now)
	}
	r.updateGauges()
	// A pass counts as done even if one checkpoint failed: that failure is
	// logged and counted, and must not make the whole node look unhealthy.
	r.lastSuccess.Store(now.UnixNano())
	r.Metrics.lastSuccess.Set(float64(now.Unix()))
	return Result{Yield: r.daemonSetCopyRuns(snap.local), Busy: r.busy()}, joinErrs(errs)
}

// observe reads the runtime, the API and the disk. An API that does not
// answer is down, not an error: the pass goes on with local state only.
func (r *Reconciler) observe(ctx context.Context, now time.Time) (*snapshot, error) {
	local, err := r.Runtime.LocalPods(ctx)
	if err != nil {
		r.count(errCRI)
		return nil, err
	}
	parents, apiErr := r.API.ParentPods(ctx)
	r.noteAPI(apiErr == nil, apiErr)
	onDisk, err := r.Store.List()
	if err != nil {
		r.count(errDisk)
		return nil, err
	}
	snap := &snapshot{now: now, apiUp: apiErr == nil, parents: parents, byKey: map[string]*corev1.Pod{}, local: local, onDisk: onDisk}
	for i := range parents {
		snap.byKey[Key(parents[i].Namespace, parents[i].Name)] = &parents[i]
	}
	return snap, nil
}

// busy reports whether a checkpoint other than the checkpointer's own waits
// to activate or to hand over.
func (r *Reconciler) busy() bool {
	self := Key(r.Namespace, r.Self)
	for key, s := range r.states {
		if key != self && (s.Pending == checkpoint.PendingActivate || s.Pending == checkpoint.PendingHandOver) {
			return true
		}
	}
	return false
}

// reconcileOne decides one checkpoint on the pass's snapshot and makes the
// disk match.
func (r *Reconciler) reconcileOne(ctx context.Context, snap *snapshot, key string) error {
	namespace, name, _ := strings.Cut(key, "/")
	parent, od := snap.byKey[key], snap.onDisk[key]
	st, known := r.states[key]
	if !known {
		st = stateFromDisk(od, snap.now)
	}
	if namespace == r.Namespace && name == r.Self {
		return r.keepSelf(ctx, snap, key, st)
	}
	obs := checkpoint.Observation{APIUp: snap.apiUp, ParentInAPI: parent != nil, ParentReady: r.parentReady(snap, key)}
	if snap.apiUp && parent == nil && od != nil {
		obs.SuccessorInAPI, obs.SuccessorReady, obs.SuccessorCheckpointed = r.successor(snap, od.Pod)
		if !obs.SuccessorInAPI {
			obs.OwnerWantsNode = r.ownerWantsNode(ctx, key, od.Pod)
		}
	}
	if od != nil && od.Pod != nil {
		obs.Superseded = superseded(snap, od.Pod)
	}
	next := checkpoint.Step(st, obs, snap.now, r.Grace)

	var refreshErr, applyErr error
	if snap.apiUp && parent != nil && obs.ParentReady && next.Phase != checkpoint.PhaseRemoved {
		if refreshErr = r.refresh(ctx, snap, key); refreshErr != nil && st.Phase == checkpoint.PhaseNone {
			next = st // no checkpoint without its volume copies
		}
	}
	applyErr = r.apply(namespace, name, next.Phase, od)
	if snap.apiUp && parent == nil && next.Phase == checkpoint.PhaseNone && od != nil && od.Copies {
		applyErr = r.Store.Remove(namespace, name) // copies whose manifest was never written
	}
	err := errors.Join(refreshErr, applyErr)
	r.record(key, st, next, obs)
	r.noteErr(key, "checkpoint not up to date", err)
	return err
}

// noteErr counts every error but logs it only when it differs from the last
// one for that checkpoint, so an unsupported pod does not flood the log.
func (r *Reconciler) noteErr(key, msg string, err error) {
	if err == nil {
		if _, had := r.lastErr[key]; had {
			delete(r.lastErr, key)
			r.Log.Info("checkpoint up to date again", "checkpoint", key)
		}
		return
	}
	r.count(errCheckpoint)
	if r.lastErr[key] != err.Error() {
		r.lastErr[key] = err.Error()
		r.Log.Warn(msg, "checkpoint", key, "err", err)
	}
}

// apply makes the disk match a phase. It also repairs: an active checkpoint
// whose manifest someone deleted is put back.
func (r *Reconciler) apply(namespace, name string, p checkpoint.Phase, od *OnDisk) error {
	active := od != nil && od.Active
	switch p {
	case checkpoint.PhaseActive:
		if !active {
			return r.Store.Activate(namespace, name)
		}
	case checkpoint.PhaseInactive:
		if active {
			return r.Store.Deactivate(namespace, name)
		}
	case checkpoint.PhaseRemoved:
		return r.Store.Remove(namespace, name)
	}
	return nil
}

// stateFromDisk is the state of a checkpoint found on disk at start-up.
func stateFromDisk(od *OnDisk, now time.Time) checkpoint.State {
	switch {
	case od != nil && od.Active:
		return checkpoint.State{Phase: checkpoint.PhaseActive, Since: now}
	case od != nil && od.Inactive:
		return checkpoint.State{Phase: checkpoint.PhaseInactive, Since: now}
	}
	return checkpoint.State{Phase: checkpoint.PhaseNone, Since: now}
}

// record stores the new state and logs one line per phase change.
func (r *Reconciler) record(key string, from, to checkpoint.State, o checkpoint.Observation) {
	switch {
	case to.Phase == checkpoint.PhaseRemoved, to.Phase == checkpoint.PhaseNone && !o.ParentInAPI:
		delete(r.states, key)
		delete(r.copied, key)
	default:
		r.states[key] = to
	}
	if from.Phase == to.Phase {
		if to.Pending != from.Pending && to.Pending != checkpoint.PendingNothing {
			r.Log.Debug("checkpoint waiting", "checkpoint", key, "for", to.Pending)
		}
		return
	}
	r.Metrics.transitions.WithLabelValues(string(from.Phase), string(to.Phase)).Inc()
	r.Log.Info("checkpoint transition", "checkpoint", key, "from", from.Phase, "to", to.Phase,
		"apiUp", o.APIUp, "parentInAPI", o.ParentInAPI, "parentReady", o.ParentReady)
}

// addKeys adds the keys of m to set.
func addKeys[V any](set map[string]bool, m map[string]V) {
	for k := range m {
		set[k] = true
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return fmt.Errorf("%w (and %d more)", errs[0], len(errs)-1)
}
