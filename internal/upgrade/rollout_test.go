package upgrade

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pod is an API server pod created at created, Ready since ready (zero: not Ready).
func pod(name string, created, ready time.Time) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
	if !ready.IsZero() {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(ready)}}
	}
	return p
}

// TestNextSurgeMove is the API server rollout's state machine: an old pod
// goes only after its node's new pod is Ready and checkpointed, nodes go in
// order, and each way of getting stuck fails with the node and pod named.
func TestNextSurgeMove(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	old := func(n string) *corev1.Pod { return pod("old-"+n, ago(3600), ago(3600)) }
	timeout := 2 * time.Minute
	done := func(n string) surgeNode { return surgeNode{name: n, newPod: pod("new-"+n, ago(300), ago(290))} }
	for _, tc := range []struct {
		name  string
		nodes []surgeNode
		stuck time.Duration // the DaemonSet has started no pod for this long
		kind  moveKind
		pod   string // the pod removed or failed
		want  string // in the wait or the failure
	}{
		{name: "every node runs only the new revision", nodes: []surgeNode{done("a"), done("b")}, kind: moveDone},
		{name: "no surge yet", nodes: []surgeNode{{name: "a", oldPod: old("a")}, {name: "b", oldPod: old("b")}},
			kind: moveWait, want: "the DaemonSet to start a new pod beside old-a on a"},
		{name: "the DaemonSet starts no new pod", nodes: []surgeNode{{name: "a", oldPod: old("a")}}, stuck: 3 * time.Minute,
			kind: moveFail, pod: "old-a", want: "kube-apiserver on a: no new pod was not Ready within 2m0s: the DaemonSet started no new pod beside old-a"},
		{name: "new pod starting", nodes: []surgeNode{{name: "a", oldPod: old("a"), newPod: pod("new-a", ago(20), time.Time{})}},
			kind: moveWait, want: "new-a on a to be Ready (20s)"},
		{name: "new pod never Ready: fail, keep the old one", nodes: []surgeNode{{name: "a", oldPod: old("a"), newPod: pod("new-a", ago(121), time.Time{})}},
			kind: moveFail, pod: "new-a", want: "kube-apiserver on a: pod new-a was not Ready within 2m0s"},
		{name: "Ready, not checkpointed: the old pod stays", nodes: []surgeNode{{name: "a", oldPod: old("a"), newPod: pod("new-a", ago(30), ago(5))}},
			kind: moveWait, want: "pod-checkpointer on a to checkpoint new-a"},
		{name: "Ready, never checkpointed: fail before the DaemonSet would remove the old pod", nodes: []surgeNode{{name: "a", oldPod: old("a"), newPod: pod("new-a", ago(60), ago(41))}},
			kind: moveFail, pod: "new-a", want: "holds no inactive checkpoint of it"},
		{name: "Ready and checkpointed: the old pod goes", nodes: []surgeNode{{name: "a", oldPod: old("a"), newPod: pod("new-a", ago(30), ago(5)), checkpointed: true}},
			kind: moveRemoveOld, pod: "old-a", want: "old-a to go from a: new-a is Ready and checkpointed"},
		{name: "nodes in order: a done, b next", nodes: []surgeNode{done("a"), {name: "b", oldPod: old("b"), newPod: pod("new-b", ago(30), ago(5)), checkpointed: true}, {name: "c", oldPod: old("c")}},
			kind: moveRemoveOld, pod: "old-b"},
		{name: "the DaemonSet surged on c before b: c comes first", nodes: []surgeNode{done("a"), {name: "b", oldPod: old("b")}, {name: "c", oldPod: old("c"), newPod: pod("new-c", ago(30), ago(5)), checkpointed: true}},
			kind: moveRemoveOld, pod: "old-c"},
		{name: "old pod gone, new one not Ready yet", nodes: []surgeNode{{name: "a", newPod: pod("new-a", ago(10), time.Time{})}, {name: "b", oldPod: old("b")}},
			kind: moveWait, want: "new-a on a to be Ready"},
		{name: "a node with no pod at all", nodes: []surgeNode{done("a"), {name: "b"}}, kind: moveWait, want: "the DaemonSet to run a pod on b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stuckSince time.Time
			if tc.stuck > 0 {
				stuckSince = now.Add(-tc.stuck)
			}
			mv := nextSurgeMove(tc.nodes, now, timeout, &stuckSince)
			if mv.kind != tc.kind {
				t.Fatalf("move %d, want %d (%+v)", mv.kind, tc.kind, mv)
			}
			if tc.pod != "" && (mv.pod == nil || mv.pod.Name != tc.pod) {
				t.Errorf("pod %v, want %s", mv.pod, tc.pod)
			}
			got := mv.why
			if mv.failure != nil {
				if mv.failure.reason == "" {
					mv.failure.reason = "(reason)"
				}
				got = mv.failure.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStrategies(t *testing.T) {
	ds := &appsv1.DaemonSet{}
	surging(ds)
	if isResting(ds) || ds.Spec.MinReadySeconds != surgeMinReady || intOf(ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge) != 1 ||
		intOf(ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable) != 0 {
		t.Errorf("surging: %+v", ds.Spec)
	}
	resting(ds)
	if !isResting(ds) {
		t.Errorf("resting: %+v", ds.Spec)
	}
	if time.Duration(surgeMinReady)*time.Second <= checkpointWait {
		t.Errorf("the rollback after %s without a checkpoint must come before the DaemonSet removes the old pod at %ds", checkpointWait, surgeMinReady)
	}
}
