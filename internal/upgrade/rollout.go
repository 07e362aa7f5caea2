package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pivot"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

const (
	// surgeMinReady is the API server DaemonSet's minReadySeconds while the
	// upgrade drives it. The DaemonSet would remove an old pod once its
	// successor has been Ready this long; the upgrade removes it sooner, as
	// soon as the successor is checkpointed, and rolls back before this
	// runs out when no checkpoint comes (checkpointWait).
	surgeMinReady  = 60
	checkpointWait = 40 * time.Second
	poll           = time.Second
)

// errNotReady is a component that did not become Ready in time.
type errNotReady struct {
	component, node, pod, reason string
	within                       time.Duration
}

func (e *errNotReady) Error() string {
	where, what := "", "no new pod"
	if e.node != "" {
		where = " on " + e.node
	}
	if e.pod != "" {
		what = "pod " + e.pod
	}
	return fmt.Sprintf("%s%s: %s was not Ready within %s: %s", e.component, where, what, e.within, e.reason)
}

// surging is the API server DaemonSet's strategy during an upgrade: a new
// pod beside each old one, one node at a time, none removed by the
// DaemonSet before the upgrade removes it.
func surging(ds *appsv1.DaemonSet) {
	ds.Spec.MinReadySeconds = surgeMinReady
	ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0))}}
}

// resting is the strategy bootstrap gives it, restored afterwards.
func resting(ds *appsv1.DaemonSet) {
	ds.Spec.MinReadySeconds = 0
	ds.Spec.UpdateStrategy = pivot.DaemonSetStrategy()
}

// isResting compares by value: the API server fills in the maxSurge that
// bootstrap leaves out.
func isResting(ds *appsv1.DaemonSet) bool {
	want, have := pivot.DaemonSetStrategy(), ds.Spec.UpdateStrategy
	return ds.Spec.MinReadySeconds == 0 && have.Type == want.Type && have.RollingUpdate != nil &&
		intOf(have.RollingUpdate.MaxSurge) == intOf(want.RollingUpdate.MaxSurge) &&
		intOf(have.RollingUpdate.MaxUnavailable) == intOf(want.RollingUpdate.MaxUnavailable)
}

func intOf(v *intstr.IntOrString) int {
	if v == nil {
		return 0
	}
	return v.IntValue()
}

// upgradeTo moves a component to tmpl and, when a new pod is not Ready
// in time, back to its previous revision the same way.
func upgradeTo(ctx context.Context, c *Context, comp Component, tmpl corev1.PodTemplateSpec) error {
	w, err := getWorkload(ctx, c, comp)
	if err != nil {
		return err
	}
	// A resumed API server rollout surges already; its new pods are young.
	if w.ds != nil && comp.Name == "kube-apiserver" && w.ds.Spec.MinReadySeconds != surgeMinReady {
		if err := awaitAvailable(ctx, c, w); err != nil {
			return err
		}
	}
	failure := moveTo(ctx, c, comp, tmpl)
	var nr *errNotReady
	if !errors.As(failure, &nr) {
		return failure
	}
	return rollBack(ctx, c, comp, failure, func(prev corev1.PodTemplateSpec) error {
		return moveTo(ctx, c, comp, prev)
	})
}

// moveTo applies tmpl and waits until it runs everywhere: the API server
// node by node through its surge, the rest by their own strategies, the
// clock restarting whenever one more pod is updated and Ready.
func moveTo(ctx context.Context, c *Context, comp Component, tmpl corev1.PodTemplateSpec) error {
	w, err := getWorkload(ctx, c, comp)
	if err != nil {
		return err
	}
	if comp.Name != "kube-apiserver" {
		if err := w.apply(ctx, c, tmpl, nil); err != nil {
			return err
		}
		return awaitRollout(ctx, c, comp)
	}
	if err := w.apply(ctx, c, tmpl, surging); err != nil {
		return err
	}
	if err := driveSurge(ctx, c, comp); err != nil {
		return err
	}
	return restStrategy(ctx, c, comp)
}

// awaitAvailable waits until each Ready API server pod has been Ready for
// surgeMinReady: the DaemonSet surges at once on every node whose old pod
// it counts as unavailable, and the upgrade wants one node at a time.
func awaitAvailable(ctx context.Context, c *Context, w *workload) error {
	return wait.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		r, err := w.observe(ctx, c)
		if err != nil || r == nil {
			return false, nil
		}
		for _, p := range r.pods {
			if since := readySince(&p); !since.IsZero() {
				if c.now().Sub(since) < surgeMinReady*time.Second {
					c.Waiting("%s to have been Ready for %ds, so that the DaemonSet surges one node at a time", p.Name, surgeMinReady)
					return false, nil
				}
			}
		}
		return true, nil
	})
}

func readySince(p *corev1.Pod) time.Time {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
			return cond.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

func restStrategy(ctx context.Context, c *Context, comp Component) error {
	w, err := getWorkload(ctx, c, comp)
	if err != nil {
		return err
	}
	if isResting(w.ds) {
		return nil
	}
	return w.apply(ctx, c, w.template(), resting)
}

// driveSurge waits, node after node, for the DaemonSet's new pod to be
// Ready and checkpointed there, then removes the node's old pod, until
// every node runs only the current revision.
func driveSurge(ctx context.Context, c *Context, comp Component) error {
	var (
		stuckSince time.Time
		result     error
	)
	err := wait.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		r, nodes := surgeState(ctx, c, comp)
		if r == nil {
			return false, nil
		}
		mv := nextSurgeMove(nodes, c.now(), c.Timeout, &stuckSince)
		switch mv.kind {
		case moveDone:
			// Old pods stop during their grace period while the next
			// nodes surge; the rollout ends when they are gone.
			if len(r.stopping) > 0 {
				c.Waiting("%s to stop (its grace period)", r.stopping[0].Name)
				return false, nil
			}
			return true, nil
		case moveWait:
			c.Waiting("%s", mv.why)
		case moveFail:
			if mv.failure.reason == "" {
				mv.failure.reason = podTrouble(ctx, c, mv.pod)
			}
			result = mv.failure
			return true, nil
		case moveRemoveOld:
			c.Waiting("%s", mv.why)
			err := c.Client.CoreV1().Pods(kube.Namespace).Delete(ctx, mv.pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &mv.pod.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return false, nil
			}
			c.Waiting("the API to answer /readyz three times in a row after %s left %s", mv.pod.Name, mv.pod.Spec.NodeName)
			return false, kube.WaitReadyz(ctx, c.Client, 3, poll)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", comp.Name, err)
	}
	return result
}

// surgeNode is what one control-plane node runs of the API server
// DaemonSet: its pod of the current revision, its pod of an earlier one,
// and whether the node's pod-checkpointer holds an inactive checkpoint of
// the current one.
type surgeNode struct {
	name         string
	newPod       *corev1.Pod
	oldPod       *corev1.Pod
	checkpointed bool
}

// surgeState reads the DaemonSet's rollout and each control-plane node's
// surgeNode; a nil rollout while the DaemonSet controller has not caught
// up with the spec.
func surgeState(ctx context.Context, c *Context, comp Component) (*rollout, []surgeNode) {
	w, err := getWorkload(ctx, c, comp)
	if err != nil {
		return nil, nil
	}
	r, err := w.observe(ctx, c)
	if err != nil || r == nil {
		return nil, nil
	}
	out := make([]surgeNode, len(c.ControlPlane))
	for i, node := range c.ControlPlane {
		out[i].name = node
		for j := range r.pods {
			p := &r.pods[j]
			switch {
			case p.Spec.NodeName != node:
			case r.isCurrent(p):
				out[i].newPod = p
			default:
				out[i].oldPod = p
			}
		}
		if np := out[i].newPod; np != nil && out[i].oldPod != nil && kube.PodReady(np) {
			st, err := checkpoint.ReadNodeStatus(ctx, c.Client.CoreV1().ConfigMaps(kube.Namespace), node)
			out[i].checkpointed = err == nil && st.HasInactive(np.Name)
		}
	}
	return r, out
}

type moveKind int

const (
	moveDone moveKind = iota
	moveWait
	moveRemoveOld
	moveFail
)

// surgeMove is the next thing the upgrade does for the API server.
type surgeMove struct {
	kind    moveKind
	why     string      // what it waits on, or why it removes a pod
	pod     *corev1.Pod // the pod to remove, or the one that failed
	failure *errNotReady
}

// nextSurgeMove decides what to do next. The DaemonSet picks the node it
// surges on; a node it has surged on comes first, then nodes in order. An
// old pod goes only when its node's new pod is Ready and checkpointed. A
// new pod not Ready within timeout of its creation fails the rollout, as
// does a Ready one the checkpointer has not taken within checkpointWait
// (the DaemonSet itself would remove the old pod at surgeMinReady), or no
// new pod anywhere for timeout. stuckSince tracks that last wait.
func nextSurgeMove(nodes []surgeNode, now time.Time, timeout time.Duration, stuckSince *time.Time) surgeMove {
	var unsurged *surgeNode
	for i := range nodes {
		n := &nodes[i]
		np, op := n.newPod, n.oldPod
		switch {
		case np == nil && op == nil:
			return surgeMove{kind: moveWait, why: "the DaemonSet to run a pod on " + n.name}
		case np == nil:
			if unsurged == nil {
				unsurged = n
			}
		case !kube.PodReady(np):
			*stuckSince = time.Time{}
			if age := now.Sub(np.CreationTimestamp.Time); age > timeout {
				return surgeMove{kind: moveFail, pod: np, failure: &errNotReady{component: "kube-apiserver", node: n.name, pod: np.Name, within: timeout}}
			}
			return surgeMove{kind: moveWait, why: fmt.Sprintf("%s on %s to be Ready (%s)", np.Name, n.name, now.Sub(np.CreationTimestamp.Time).Round(time.Second))}
		case op == nil:
		case !n.checkpointed:
			*stuckSince = time.Time{}
			if now.Sub(readySince(np)) > checkpointWait {
				return surgeMove{kind: moveFail, pod: np, failure: &errNotReady{component: "kube-apiserver", node: n.name, pod: np.Name, within: checkpointWait,
					reason: "it is Ready, but the pod-checkpointer on the node holds no inactive checkpoint of it"}}
			}
			return surgeMove{kind: moveWait, why: fmt.Sprintf("pod-checkpointer on %s to checkpoint %s", n.name, np.Name)}
		default:
			*stuckSince = time.Time{}
			return surgeMove{kind: moveRemoveOld, pod: op, why: fmt.Sprintf("%s to go from %s: %s is Ready and checkpointed", op.Name, n.name, np.Name)}
		}
	}
	if unsurged == nil {
		return surgeMove{kind: moveDone}
	}
	if stuckSince.IsZero() {
		*stuckSince = now
	}
	if now.Sub(*stuckSince) > timeout {
		return surgeMove{kind: moveFail, pod: unsurged.oldPod, failure: &errNotReady{component: "kube-apiserver", node: unsurged.name, within: timeout,
			reason: "the DaemonSet started no new pod beside " + unsurged.oldPod.Name}}
	}
	return surgeMove{kind: moveWait, why: fmt.Sprintf("the DaemonSet to start a new pod beside %s on %s", unsurged.oldPod.Name, unsurged.name)}
}

func awaitRollout(ctx context.Context, c *Context, comp Component) error {
	var (
		result   error
		progress = -1
		since    = time.Now()
	)
	err := wait.PollUntilContextCancel(ctx, 2*poll, true, func(ctx context.Context) (bool, error) {
		w, err := getWorkload(ctx, c, comp)
		if err != nil {
			return false, nil
		}
		r, err := w.observe(ctx, c)
		if err != nil {
			return false, nil
		}
		why := w.settledBy(r)
		if why == "" {
			return true, nil
		}
		c.Waiting("%s: %s", comp.Name, why)
		if r == nil {
			return false, nil
		}
		ready, stuck := 0, (*corev1.Pod)(nil)
		for i := range r.pods {
			p := &r.pods[i]
			if !r.isCurrent(p) {
				continue
			}
			if kube.PodReady(p) {
				ready++
			} else if stuck == nil || p.CreationTimestamp.Before(&stuck.CreationTimestamp) {
				stuck = p
			}
		}
		if ready > progress {
			progress, since = ready, time.Now()
		}
		if time.Since(since) > c.Timeout {
			e := &errNotReady{component: comp.Name, within: c.Timeout, reason: why}
			if stuck != nil {
				e.node, e.pod, e.reason = stuck.Spec.NodeName, stuck.Name, podTrouble(ctx, c, stuck)
			}
			result = e
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", comp.Name, err)
	}
	return result
}

// rollBack restores the component's previous revision with restore and
// returns the failure that called for it, saying so.
func rollBack(ctx context.Context, c *Context, comp Component, failure error, restore func(corev1.PodTemplateSpec) error) error {
	w, err := getWorkload(ctx, c, comp)
	if err != nil {
		return fmt.Errorf("%w; rolling back failed too: %v", failure, err)
	}
	revs, err := w.revisions(ctx, c)
	if err != nil || len(revs) < 2 {
		return fmt.Errorf("%w; no previous revision to roll back to (%v)", failure, err)
	}
	prev := revs[len(revs)-2]
	c.step.Note("%v; rolling back to revision %d", failure, prev.number)
	start := time.Now()
	if err := restore(prev.template); err != nil {
		return fmt.Errorf("%w; rolling back to revision %d failed: %v", failure, prev.number, err)
	}
	return &rolledBack{fmt.Errorf("%w; rolled back to revision %d in %s, which runs everywhere again", failure, prev.number, time.Since(start).Round(time.Second))}
}

// rolledBack is a failure the upgrade undid: the component runs its
// previous revision everywhere, and the upgrade is over.
type rolledBack struct{ error }

func (r *rolledBack) Unwrap() error { return r.error }

// podTrouble says, in one line, why a pod is not Ready: its container's
// state, last exit and last log line, else its latest warning event.
func podTrouble(ctx context.Context, c *Context, p *corev1.Pod) string {
	var parts []string
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			parts = append(parts, fmt.Sprintf("container %s is %s", cs.Name, w.Reason))
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("it exited %d (%s) after %d restarts", t.ExitCode, t.Reason, cs.RestartCount))
			if line := lastLogLine(ctx, c, p, cs.Name); line != "" {
				parts = append(parts, fmt.Sprintf("its last log line: %q", line))
			}
		}
	}
	if len(parts) == 0 {
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue && cond.Message != "" {
				parts = append(parts, cond.Message)
			}
		}
	}
	if ev := lastWarning(ctx, c, p); ev != "" {
		parts = append(parts, "event: "+ev)
	}
	if len(parts) == 0 {
		return "its containers are not ready"
	}
	return strings.Join(parts, "; ")
}

func lastLogLine(ctx context.Context, c *Context, p *corev1.Pod, container string) string {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := c.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, Previous: true, TailLines: ptr.To(int64(5))}).DoRaw(lctx)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			if len(l) > 300 {
				l = l[:300] + "…"
			}
			return l
		}
	}
	return ""
}

func lastWarning(ctx context.Context, c *Context, p *corev1.Pod) string {
	list, err := c.Client.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(p.UID) + ",type=Warning"})
	if err != nil || len(list.Items) == 0 {
		return ""
	}
	last := list.Items[0]
	for _, e := range list.Items[1:] {
		if e.LastTimestamp.After(last.LastTimestamp.Time) {
			last = e
		}
	}
	return last.Reason + ": " + last.Message
}
