package checkpointer

import (
	"bytes"
	"context"
	"encoding/json"
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
	Clock   clock.PassiveClock

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
	local, err := r.Runtime.LocalPods(ctx)
	if err != nil {
		r.count(errCRI)
		return Result{}, err
	}
	parents, apiErr := r.API.ParentPods(ctx)
	apiUp := apiErr == nil
	r.noteAPI(apiUp, apiErr)
	onDisk, err := r.Store.List()
	if err != nil {
		r.count(errDisk)
		return Result{}, err
	}

	if r.daemonSetGoneFor(ctx, apiUp, now) >= r.Grace.Remove {
		return Result{TornDown: true}, r.teardown(ctx, onDisk)
	}

	byKey := map[string]*corev1.Pod{}
	for i := range parents {
		byKey[Key(parents[i].Namespace, parents[i].Name)] = &parents[i]
	}
	keys := map[string]bool{}
	for k := range byKey {
		keys[k] = true
	}
	for k := range onDisk {
		keys[k] = true
	}
	for k := range r.states {
		keys[k] = true
	}
	var errs []error
	for _, key := range sorted(keys) {
		if err := r.reconcileOne(ctx, key, byKey[key], onDisk[key], parents, local, apiUp, now); err != nil {
			errs = append(errs, err)
		}
	}
	if apiUp {
		r.publish(ctx, now)
	}
	r.updateGauges()
	// A pass counts as done even if one checkpoint failed: that failure is
	// logged and counted, and must not make the whole node look unhealthy.
	r.lastSuccess.Store(now.UnixNano())
	r.Metrics.lastSuccess.Set(float64(now.Unix()))
	return Result{Yield: r.daemonSetCopyRuns(local), Busy: r.busy()}, joinErrs(errs)
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

func (r *Reconciler) reconcileOne(ctx context.Context, key string, parent *corev1.Pod, od *OnDisk, parents []corev1.Pod, local []LocalPod, apiUp bool, now time.Time) error {
	namespace, name, _ := strings.Cut(key, "/")
	st, known := r.states[key]
	if !known {
		st = stateFromDisk(od, now)
	}
	if namespace == r.Namespace && name == r.Self {
		return r.keepSelf(ctx, key, st, parent, od, apiUp, now)
	}
	obs := checkpoint.Observation{APIUp: apiUp, ParentInAPI: parent != nil, ParentReady: r.parentReady(parent, od, namespace, name, local, now)}
	if apiUp && parent == nil && od != nil {
		obs.SuccessorInAPI, obs.SuccessorReady = r.successor(od.Pod, parents, local, now)
	}
	next := checkpoint.Step(st, obs, now, r.Grace)

	var refreshErr, applyErr error
	if apiUp && parent != nil && obs.ParentReady && next.Phase != checkpoint.PhaseRemoved {
		if refreshErr = r.refresh(ctx, key, parent, od, now); refreshErr != nil && st.Phase == checkpoint.PhaseNone {
			next = st // no checkpoint without its volume copies
		}
	}
	applyErr = r.apply(namespace, name, next.Phase, od)
	if apiUp && parent == nil && next.Phase == checkpoint.PhaseNone && od != nil && od.Copies {
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

// keepSelf keeps the checkpointer's own checkpoint active: it waits on the
// lock and takes over whenever this pod is away, such as after a reboot.
func (r *Reconciler) keepSelf(ctx context.Context, key string, st checkpoint.State, parent *corev1.Pod, od *OnDisk, apiUp bool, now time.Time) error {
	var err error
	written := od != nil && od.Inactive
	if apiUp && parent != nil {
		if err = r.refresh(ctx, key, parent, od, now); err == nil {
			written = true
		}
	}
	next := st
	if err == nil && written {
		if err = r.apply(r.Namespace, r.Self, checkpoint.PhaseActive, od); err == nil && st.Phase != checkpoint.PhaseActive {
			next = checkpoint.State{Phase: checkpoint.PhaseActive, Since: now}
		}
	}
	r.record(key, st, next, checkpoint.Observation{APIUp: apiUp, ParentInAPI: parent != nil, ParentReady: true})
	r.noteErr(key, "own checkpoint not up to date", err)
	return err
}

// successor reports whether the API lists a pod of the checkpoint's
// controller in its parent's place on this node, and whether one is Ready here.
func (r *Reconciler) successor(cp *corev1.Pod, parents []corev1.Pod, local []LocalPod, now time.Time) (inAPI, ready bool) {
	owner := checkpoint.Owner(cp)
	if owner == "" {
		return false, false
	}
	for i := range parents {
		p := &parents[i]
		if p.Namespace != cp.Namespace || p.Name == checkpoint.CheckpointOf(cp) || checkpoint.Owner(p) != owner {
			continue
		}
		inAPI = true
		if r.parentReady(p, nil, p.Namespace, p.Name, local, now) {
			ready = true
		}
	}
	return inAPI, ready
}

// parentReady: with the API up, the parent (matched by UID) runs here per the
// runtime and the API reports those very containers Ready. With the API down,
// the parent must have run every container for MinStable and, where Probe can
// tell, pass its readiness probes: a parent shutting down still runs.
func (r *Reconciler) parentReady(parent *corev1.Pod, od *OnDisk, namespace, name string, local []LocalPod, now time.Time) bool {
	if parent != nil {
		return podReady(parent) && runningHere(local, namespace, name, string(parent.UID), containerNames(parent), readyIDs(parent), now, r.MinStable)
	}
	var spec *corev1.Pod
	if od != nil {
		spec = od.Pod
	}
	return runningHere(local, namespace, name, "", containerNames(spec), nil, now, r.MinStable) &&
		(r.Probe == nil || r.Probe(spec))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyIDs maps each container that the API reports ready to its runtime's
// container ID. After a reboot the API keeps the last boot's Ready until the
// kubelet reports again, and a parent that has not served yet would otherwise
// count as Ready and take the node back from its checkpoint.
func readyIDs(p *corev1.Pod) map[string]string {
	ids := map[string]string{}
	for _, st := range p.Status.ContainerStatuses {
		if _, id, ok := strings.Cut(st.ContainerID, "://"); ok && st.Ready {
			ids[st.Name] = id
		}
	}
	return ids
}

func containerNames(p *corev1.Pod) []string {
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(p.Spec.Containers))
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

// refresh writes the checkpoint of a Ready parent: volume copies first, so
// that a manifest never names a copy that is not there, then the manifest.
// Copies are re-read when the manifest changes or every RefreshEvery.
func (r *Reconciler) refresh(ctx context.Context, key string, parent *corev1.Pod, od *OnDisk, now time.Time) error {
	cp, copies, err := checkpoint.Sanitize(parent, r.SecretDir)
	if err != nil {
		return err
	}
	manifestChanged := od == nil || !od.Inactive || !samePod(cp, od.Pod)
	if manifestChanged || now.Sub(r.copied[key]) >= r.RefreshEvery {
		for _, vc := range copies {
			data := map[string]map[string][]byte{}
			for _, src := range vc.Sources {
				d, found, err := r.API.VolumeData(ctx, src.Kind, src.Name)
				if err != nil {
					return err
				}
				if found {
					data[src.Kind+"/"+src.Name] = d
				}
			}
			files, err := checkpoint.Project(vc, data)
			if err != nil {
				return err
			}
			if _, err := r.Store.WriteVolume(vc.Dir, files, vc.UID, vc.GID); err != nil {
				return err
			}
		}
		r.copied[key] = now
	}
	if changed, err := r.Store.WriteInactive(cp); err != nil {
		return err
	} else if changed {
		r.Log.Info("checkpoint written", "checkpoint", key)
	}
	return nil
}

func samePod(a, b *corev1.Pod) bool {
	if a == nil || b == nil {
		return false
	}
	x, err1 := EncodePod(a)
	y, err2 := EncodePod(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
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

// daemonSetGoneFor is how long the API has said, without a break, that the
// checkpointer's DaemonSet is gone. Any doubt resets it: tearing down is final.
func (r *Reconciler) daemonSetGoneFor(ctx context.Context, apiUp bool, now time.Time) time.Duration {
	gone := false
	if apiUp && r.DaemonSet != "" {
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
		r.dsGoneSince = now
		r.Log.Info("the checkpointer DaemonSet is gone; removing every checkpoint after the grace period", "daemonSet", r.DaemonSet, "grace", r.Grace.Remove)
	}
	return now.Sub(r.dsGoneSince)
}

// teardown removes every checkpoint, the checkpointer's own last: removing
// its active manifest is what makes the kubelet stop this process.
func (r *Reconciler) teardown(ctx context.Context, onDisk map[string]*OnDisk) error {
	self := Key(r.Namespace, r.Self)
	keys := map[string]bool{}
	for k := range onDisk {
		keys[k] = true
	}
	for k := range r.states {
		keys[k] = true
	}
	var errs []error
	remove := func(key string) {
		ns, name, _ := strings.Cut(key, "/")
		from := r.states[key]
		if from.Phase == "" {
			from = stateFromDisk(onDisk[key], r.Clock.Now())
		}
		if err := r.Store.Remove(ns, name); err != nil {
			r.count(errDisk)
			errs = append(errs, err)
			return
		}
		r.record(key, from, checkpoint.State{Phase: checkpoint.PhaseRemoved, Since: r.Clock.Now()}, checkpoint.Observation{APIUp: true})
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

// Status returns what this reconciler would publish.
func (r *Reconciler) Status(now time.Time) checkpoint.NodeStatus {
	st := checkpoint.NodeStatus{Node: r.Node, Pod: r.PodName, Updated: now, Checkpoints: []checkpoint.CheckpointStatus{}}
	keys := map[string]bool{}
	for k := range r.states {
		keys[k] = true
	}
	for _, k := range sorted(keys) {
		_, name, _ := strings.Cut(k, "/")
		st.Checkpoints = append(st.Checkpoints, checkpoint.CheckpointStatus{Parent: name, State: r.states[k]})
	}
	return st
}

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
	if up {
		r.Metrics.apiUp.Set(1)
	} else {
		r.Metrics.apiUp.Set(0)
		r.count(errAPI)
	}
	if r.apiWasUp == nil || *r.apiWasUp != up {
		if up {
			r.Log.Info("API server reachable")
		} else {
			r.Log.Warn("API server unreachable; acting on local state only", "err", err)
		}
		r.apiWasUp = &up
	}
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
