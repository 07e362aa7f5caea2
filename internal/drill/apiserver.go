// Package drill runs active recovery drills on a live self-hosted cluster:
// it breaks something on purpose and measures how the cluster brings itself
// back, with no human help.
package drill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

const (
	apiServer = "kube-apiserver"
	// MinReadyCheckpoints is how many control-plane nodes must be able to
	// take over before every API server is deleted.
	MinReadyCheckpoints = 2
	// statusFresh is how old a checkpointer's status may be; it publishes at
	// least every minute.
	statusFresh = 3 * time.Minute
)

// APIServer deletes every kube-apiserver pod at once. The checkpoints (or
// DaemonSet pods that return in time) must serve the API again, the
// DaemonSet must become whole, and the checkpoints must step down.
type APIServer struct {
	// Client reads and deletes; its requests must time out, or a half-dead
	// API server stalls the drill.
	Client kubernetes.Interface
	// Probe reads the API once through the endpoint users have (kind's load
	// balancer, say). It must give up quickly: it runs every Interval.
	Probe    func(ctx context.Context) error
	Status   *progress.Status
	Interval time.Duration // between probes
	// StatusInterval is between reads of the checkpointers' status.
	StatusInterval time.Duration
	Timeout        time.Duration // for each phase
	// Clock times the drill and ticks the probe; nil is the real clock.
	Clock clock.WithTicker
	// Unsettled, when set, says what still fails verify's checks, or "".
	// The drill waits for it last: a controller-manager or scheduler that
	// led through the outage loses its lease, exits and is restarted.
	Unsettled func(ctx context.Context) (string, error)
}

// Result is what the drill measured. Every duration counts from the deletion.
type Result struct {
	Deleted        []string `json:"deleted"`
	Requests       int      `json:"requests"`
	FailedRequests int      `json:"failedRequests"`
	// LongestGap is the longest time between two answers (from the deletion
	// to the first).
	LongestGap Seconds `json:"longestGapSeconds"`
	// APIBack is when the API first answered after the outage began: the
	// time to recovery. APISteady is when it answered after its last failed
	// request. Both are zero when no request failed.
	APIBack   Seconds `json:"apiBackSeconds"`
	APISteady Seconds `json:"apiSteadySeconds"`
	// DaemonSetReady is when the API answered and a new Ready API server
	// pod ran on every control-plane node.
	DaemonSetReady Seconds `json:"daemonSetReadySeconds"`
	// SteppedDown is when no API server checkpoint was active any more and
	// each new pod had an inactive one.
	SteppedDown Seconds `json:"steppedDownSeconds"`
	// Settled is when every check but DNS passed again (zero without
	// Unsettled).
	Settled Seconds `json:"settledSeconds"`
	// Timeline is what happened when, for `verify --report`.
	Timeline Timeline `json:"timeline"`
}

// Seconds is a duration that prints, and encodes to JSON, as seconds.
type Seconds time.Duration

func (s Seconds) String() string { return time.Duration(s).Round(100 * time.Millisecond).String() }

// Duration converts back.
func (s Seconds) Duration() time.Duration { return time.Duration(s) }

// MarshalJSON writes seconds with millisecond precision.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", time.Duration(s).Seconds()), nil
}

// Preflight checks, changing nothing, that the drill can be survived: the
// DaemonSet is whole and at least MinReadyCheckpoints control-plane nodes
// hold a fresh, inactive checkpoint of their own API server pod. It returns
// the nodes that could take over.
func (d *APIServer) Preflight(ctx context.Context) ([]string, error) {
	nodes, pods, err := d.read(ctx)
	if err != nil {
		return nil, err
	}
	byNode := map[string]*corev1.Pod{}
	for i := range pods {
		if kube.PodReady(&pods[i]) {
			byNode[pods[i].Spec.NodeName] = &pods[i]
		}
	}
	var ready, problems []string
	for _, n := range nodes {
		p := byNode[n]
		if p == nil {
			problems = append(problems, n+": no Ready API server pod")
			continue
		}
		st, err := checkpoint.ReadNodeStatus(ctx, d.Client.CoreV1().ConfigMaps(kube.Namespace), n)
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case d.clock().Since(st.Updated) > statusFresh:
			problems = append(problems, fmt.Sprintf("%s: the checkpointer last reported %s ago", n, d.clock().Since(st.Updated).Round(time.Second)))
		case !st.HasInactive(p.Name):
			problems = append(problems, fmt.Sprintf("%s: no inactive checkpoint of %s", n, p.Name))
		default:
			ready = append(ready, n)
		}
	}
	if len(ready) < MinReadyCheckpoints {
		return ready, fmt.Errorf("refusing to drill: %d of %d control-plane nodes hold a ready checkpoint of their API server and at least %d must, or the cluster may not come back (%s)",
			len(ready), len(nodes), MinReadyCheckpoints, strings.Join(problems, "; "))
	}
	return ready, nil
}

// Run deletes every API server pod and waits for the cluster to recover. It
// returns what it measured even when a phase times out.
func (d *APIServer) Run(ctx context.Context) (*Result, error) {
	nodes, old, err := d.read(ctx)
	if err != nil {
		return nil, err
	}
	r := &Result{Timeline: Timeline{Nodes: nodes}}
	step := d.Status.Start(fmt.Sprintf("Deleting all %d kube-apiserver pods at once", len(old)))
	start := d.clock().Now()
	if err := d.deleteAll(ctx, start, old, r); err != nil {
		step.End(err)
		return r, err
	}
	for _, p := range old {
		r.Deleted = append(r.Deleted, p.Name)
	}
	step.End(nil)

	step = d.Status.Start("Waiting for the API and every API server pod to come back")
	err = d.awaitRecovery(ctx, step, start, nodes, old, r)
	step.End(err)
	if err != nil {
		return r, err
	}

	step = d.Status.Start("Waiting for the checkpoints to step down")
	err = d.awaitStepDown(ctx, step, start, nodes, old, r)
	step.End(err)
	if err != nil || d.Unsettled == nil {
		return r, err
	}

	step = d.Status.Start("Waiting for every check to pass")
	err = d.awaitSettled(ctx, step, start, r)
	step.End(err)
	return r, err
}

// awaitSettled asks Unsettled every StatusInterval until nothing fails.
func (d *APIServer) awaitSettled(ctx context.Context, step *progress.Step, start time.Time, r *Result) error {
	return d.poll(ctx, func(ctx context.Context) (bool, error) {
		why, err := d.Unsettled(ctx)
		if err != nil {
			why = err.Error()
		}
		now := d.clock().Now()
		if why == "" {
			r.Settled = Seconds(now.Sub(start))
			return true, nil
		}
		step.Waiting("%s", why)
		if now.Sub(start) > d.Timeout+r.SteppedDown.Duration() {
			return false, fmt.Errorf("the checks did not pass within %s of the checkpoints stepping down: %s", d.Timeout, why)
		}
		return false, nil
	})
}

// poll calls condition now, then StatusInterval after each call returns,
// until it is done or fails. The pause follows each call rather than a fixed
// rate, so that a slow API server is not read back to back. Each condition
// holds its own deadline against the drill's clock, the one that measures.
func (d *APIServer) poll(ctx context.Context, condition wait.ConditionWithContextFunc) error {
	return wait.Backoff{Duration: d.StatusInterval}.DelayFunc().Until(ctx, true, true, condition)
}

// awaitRecovery probes the API every Interval until it answers and each
// control-plane node runs a Ready API server pod that was not deleted.
func (d *APIServer) awaitRecovery(ctx context.Context, step *progress.Step, start time.Time, nodes []string, old []corev1.Pod, r *Result) error {
	deleted := uids(old)
	lastOK, lastFail := start, time.Time{}
	var lastErr error
	var back map[string]string // node -> its new Ready pod, at the last read
	seenReady := map[string]bool{}
	// A ticker, not a pause after each probe: the samples stay Interval
	// apart however long a probe takes to fail.
	tick := d.clock().NewTicker(d.Interval)
	defer tick.Stop()
	for {
		perr := d.Probe(ctx)
		now := d.clock().Now()
		r.Requests++
		r.Timeline.probe(now.Sub(start), perr == nil)
		if gap := Seconds(now.Sub(lastOK)); gap > r.LongestGap {
			r.LongestGap = gap // between two answers, or since the last one
		}
		if perr != nil {
			r.FailedRequests++
			lastFail, lastErr = now, perr
		} else {
			if lastOK.Before(lastFail) { // the first answer after a failure
				if r.APIBack == 0 {
					r.APIBack = Seconds(now.Sub(start))
				}
				r.APISteady = Seconds(now.Sub(start))
			}
			lastOK = now
		}
		if perr == nil {
			if _, pods, err := d.read(ctx); err == nil {
				back = readyOn(nodes, pods, deleted)
				for _, n := range nodes {
					if pod := back[n]; pod != "" && !seenReady[pod] {
						seenReady[pod] = true
						r.Timeline.event(d.clock().Now().Sub(start), n, EventReady, pod)
					}
				}
			}
			if len(back) == len(nodes) {
				r.DaemonSetReady = Seconds(now.Sub(start))
				return nil
			}
		}
		api := "answering"
		if perr != nil {
			api = "down"
		}
		step.Waiting("the API (%s) and new Ready API server pods (%d/%d)", api, len(back), len(nodes))
		if now.Sub(start) > d.Timeout {
			if lastErr != nil && perr != nil {
				return fmt.Errorf("the API did not answer again within %s: %w", d.Timeout, lastErr)
			}
			return fmt.Errorf("only %d of %d control-plane nodes run a new Ready API server pod after %s", len(back), len(nodes), d.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C():
		}
	}
}

// awaitStepDown waits until no checkpoint of an API server pod is active and
// each node holds an inactive checkpoint of its new pod. Checkpoints of the
// deleted pods go once the API has reported them gone for the remove grace.
func (d *APIServer) awaitStepDown(ctx context.Context, step *progress.Step, start time.Time, nodes []string, old []corev1.Pod, r *Result) error {
	deleted := names(old)
	isAPIServer := func(parent string) bool { return deleted[parent] || strings.HasPrefix(parent, apiServer+"-") }
	return d.poll(ctx, func(ctx context.Context) (bool, error) {
		var waiting []string
		_, pods, err := d.read(ctx)
		if err != nil {
			waiting = append(waiting, err.Error())
		}
		current := map[string]string{}
		for _, p := range pods {
			current[p.Spec.NodeName] = p.Name
		}
		for _, n := range nodes {
			st, err := checkpoint.ReadNodeStatus(ctx, d.Client.CoreV1().ConfigMaps(kube.Namespace), n)
			if err != nil {
				waiting = append(waiting, err.Error())
				continue
			}
			r.Timeline.observeCheckpoints(n, st, isAPIServer, start, d.clock().Now())
			for _, cp := range st.Checkpoints {
				if cp.Phase == checkpoint.PhaseActive && isAPIServer(cp.Parent) {
					waiting = append(waiting, fmt.Sprintf("%s: %s active", n, cp.Parent))
				}
			}
			if p := current[n]; !st.HasInactive(p) {
				waiting = append(waiting, fmt.Sprintf("%s: an inactive checkpoint of %q", n, p))
			}
		}
		now := d.clock().Now()
		if len(waiting) == 0 {
			r.SteppedDown = Seconds(now.Sub(start))
			return true, nil
		}
		sort.Strings(waiting)
		step.Waiting("%s", strings.Join(waiting, "; "))
		if now.Sub(start) > d.Timeout+r.DaemonSetReady.Duration() {
			return false, fmt.Errorf("the checkpoints did not step down within %s of the DaemonSet being whole: %s", d.Timeout, strings.Join(waiting, "; "))
		}
		return false, nil
	})
}

// deleteAll deletes the pods concurrently, so that no API server outlives
// the others by a round trip, and records when each delete returned.
func (d *APIServer) deleteAll(ctx context.Context, start time.Time, pods []corev1.Pod, r *Result) error {
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	returned := make([]time.Time, len(pods))
	for i := range pods {
		wg.Go(func() {
			err := d.Client.CoreV1().Pods(kube.Namespace).Delete(ctx, pods[i].Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &pods[i].UID},
			})
			returned[i] = d.clock().Now()
			if err != nil && !apierrors.IsNotFound(err) {
				errs[i] = fmt.Errorf("deleting pod %s: %w", pods[i].Name, err)
			}
		})
	}
	wg.Wait()
	for i, p := range pods {
		if errs[i] == nil {
			r.Timeline.event(returned[i].Sub(start), p.Spec.NodeName, EventDeleted, p.Name)
		}
	}
	return errors.Join(errs...)
}

// read returns the control-plane nodes and the API server DaemonSet's pods.
func (d *APIServer) read(ctx context.Context) ([]string, []corev1.Pod, error) {
	nl, err := d.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: kube.ControlPlaneLabel, // the label exists, whatever its value
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list the control-plane nodes: %w", err)
	}
	var nodes []string
	for _, n := range nl.Items {
		nodes = append(nodes, n.Name)
	}
	sort.Strings(nodes)
	if len(nodes) == 0 {
		return nil, nil, fmt.Errorf("no node carries the %s label, so there is no control plane to drill", kube.ControlPlaneLabel)
	}
	pl, err := d.Client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector(apiServer)})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list the pods in %s: %w", kube.Namespace, err)
	}
	var pods []corev1.Pod
	for _, p := range pl.Items {
		if kube.OwnedBy(&p, "DaemonSet", apiServer) && p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil, nil, fmt.Errorf("no pod of the %s DaemonSet runs in %s: the control plane is not self-hosted (run `kubectl selfhost verify`)", apiServer, kube.Namespace)
	}
	return nodes, pods, nil
}

func (d *APIServer) clock() clock.WithTicker {
	if d.Clock != nil {
		return d.Clock
	}
	return clock.RealClock{}
}

// readyOn maps each node that runs a Ready pod not among the deleted ones
// to that pod.
func readyOn(nodes []string, pods []corev1.Pod, deleted map[string]bool) map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		for i := range pods {
			if p := &pods[i]; p.Spec.NodeName == n && !deleted[string(p.UID)] && kube.PodReady(p) {
				out[n] = p.Name
				break
			}
		}
	}
	return out
}

func uids(pods []corev1.Pod) map[string]bool {
	m := map[string]bool{}
	for _, p := range pods {
		m[string(p.UID)] = true
	}
	return m
}

func names(pods []corev1.Pod) map[string]bool {
	m := map[string]bool{}
	for _, p := range pods {
		m[p.Name] = true
	}
	return m
}
