package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

var controlPlane = []string{"cp-1", "cp-2", "cp-3"}

func node(name string, controlPlane bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if controlPlane {
		n.Labels[kube.ControlPlaneLabel] = ""
	}
	return n
}

func apiPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: kube.Namespace, UID: types.UID("uid-" + name), Labels: map[string]string{kube.AppLabel: apiServer},
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: apiServer}},
		},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// statusMap is the checkpointers' ConfigMap: node -> parent -> phase.
func statusMap(updated time.Time, phases map[string]map[string]checkpoint.Phase) *corev1.ConfigMap {
	states := map[string][]checkpoint.CheckpointStatus{}
	for n, parents := range phases {
		states[n] = []checkpoint.CheckpointStatus{}
		for parent, phase := range parents {
			states[n] = append(states[n], checkpoint.CheckpointStatus{Parent: parent, State: checkpoint.State{Phase: phase}})
		}
	}
	return statusMapOf(updated, states)
}

// statusMapOf is the checkpointers' ConfigMap with whole states, dated.
func statusMapOf(updated time.Time, states map[string][]checkpoint.CheckpointStatus) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: checkpoint.StatusConfigMap, Namespace: kube.Namespace}, Data: map[string]string{}}
	for n, cps := range states {
		b, _ := json.Marshal(checkpoint.NodeStatus{Node: n, Updated: updated, Checkpoints: cps})
		cm.Data[n] = string(b)
	}
	return cm
}

// selfHosted is a healthy self-hosted cluster: an API server pod and an
// inactive checkpoint of it on each control-plane node, plus a worker.
func selfHosted(now time.Time) []runtime.Object {
	objs := []runtime.Object{node("worker", false)}
	phases := map[string]map[string]checkpoint.Phase{}
	for i, n := range controlPlane {
		pod := "kube-apiserver-" + string(rune('a'+i))
		objs = append(objs, node(n, true), apiPod(pod, n))
		phases[n] = map[string]checkpoint.Phase{pod: checkpoint.PhaseInactive, "pod-checkpointer-" + n: checkpoint.PhaseActive}
	}
	return append(objs, statusMap(now, phases))
}

func deletes(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok {
			out = append(out, d.GetName())
		}
	}
	return out
}

func TestPreflightRefusesWithFewerThanTwoReadyCheckpointsAndChangesNothing(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	stale, active := now.Add(-5*time.Minute), now
	tests := []struct {
		name      string
		status    *corev1.ConfigMap
		wantReady int
		wantErr   []string
	}{
		{name: "every node ready", wantReady: 3},
		{
			name: "one stale, one active: one left",
			status: func() *corev1.ConfigMap {
				cm := statusMap(now, map[string]map[string]checkpoint.Phase{"cp-1": {"kube-apiserver-a": checkpoint.PhaseInactive}})
				for n, p := range map[string]map[string]checkpoint.Phase{"cp-2": {"kube-apiserver-b": checkpoint.PhaseInactive}} {
					cm.Data[n] = statusMap(stale, map[string]map[string]checkpoint.Phase{n: p}).Data[n]
				}
				cm.Data["cp-3"] = statusMap(active, map[string]map[string]checkpoint.Phase{"cp-3": {"kube-apiserver-c": checkpoint.PhaseActive}}).Data["cp-3"]
				return cm
			}(),
			wantReady: 1,
			wantErr:   []string{"refusing to drill: 1 of 3", "cp-2: the checkpointer last reported 5m0s ago", "cp-3: no inactive checkpoint of kube-apiserver-c"},
		},
		{
			name:      "checkpointer not installed",
			status:    &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: kube.Namespace}},
			wantReady: 0,
			wantErr:   []string{"refusing to drill: 0 of 3", "pod-checkpointer is not installed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := selfHosted(now)
			if tt.status != nil {
				objs = append(objs[:len(objs)-1], tt.status)
			}
			client := fake.NewClientset(objs...)
			d := &APIServer{Client: client, Clock: testingclock.NewFakeClock(now)}
			ready, err := d.Preflight(context.Background())
			if len(ready) != tt.wantReady {
				t.Errorf("ready on %v, want %d nodes", ready, tt.wantReady)
			}
			switch {
			case len(tt.wantErr) == 0 && err != nil:
				t.Fatalf("unexpected refusal: %v", err)
			case len(tt.wantErr) > 0 && err == nil:
				t.Fatal("the drill was not refused")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not say %q", err, want)
				}
			}
			if d := deletes(client); len(d) > 0 {
				t.Errorf("preflight deleted %v", d)
			}
		})
	}
}

// newDrill probes every 250 ms of c, which moves only when the fakes step
// it. The status waits pause a real millisecond.
func newDrill(client *fake.Clientset, c *testingclock.FakeClock, out *bytes.Buffer, probe func(context.Context) error) *APIServer {
	s := progress.NewStatus(out, false)
	return &APIServer{Client: client, Probe: probe, Status: s, Interval: 250 * time.Millisecond, StatusInterval: time.Millisecond, Timeout: 2 * time.Second, Clock: c}
}

func newClock() *testingclock.FakeClock {
	return testingclock.NewFakeClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
}

func TestRunMeasuresTheOutageAndWaitsForTheCheckpointsToStepDown(t *testing.T) {
	c := newClock()
	client := fake.NewClientset(selfHosted(c.Now())...)
	ctx := context.Background()

	// The API is down for the first four probes (250 ms apart); during the
	// third the DaemonSet controller has made new pods, and the first node's
	// old checkpoint is active until the status has been read three times.
	probes := 0
	probe := func(context.Context) error {
		probes++
		c.Step(250 * time.Millisecond)
		if probes == 3 {
			for i, n := range controlPlane {
				p := apiPod("kube-apiserver-new"+string(rune('a'+i)), n)
				if _, err := client.CoreV1().Pods(kube.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if probes <= 4 {
			return errors.New("connection refused")
		}
		return nil
	}
	// cp-1's checkpoint began to serve 500 ms after the deletion by its
	// node's clock; cp-2's stepped down to inactive, dated, on the fourth read.
	statusReads := 0
	deletion := c.Now()
	client.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		statusReads++
		next := map[string][]checkpoint.CheckpointStatus{}
		for i, n := range controlPlane {
			next[n] = []checkpoint.CheckpointStatus{{Parent: "kube-apiserver-new" + string(rune('a'+i)), State: checkpoint.State{Phase: checkpoint.PhaseInactive}}}
		}
		if statusReads <= 3 {
			next["cp-1"] = append(next["cp-1"], checkpoint.CheckpointStatus{Parent: "kube-apiserver-a", State: checkpoint.State{Phase: checkpoint.PhaseActive, Since: deletion.Add(500 * time.Millisecond)}})
			next["cp-2"] = append(next["cp-2"], checkpoint.CheckpointStatus{Parent: "kube-apiserver-b", State: checkpoint.State{Phase: checkpoint.PhaseActive, Since: deletion.Add(time.Second)}})
		} else {
			next["cp-2"] = append(next["cp-2"], checkpoint.CheckpointStatus{Parent: "kube-apiserver-b", State: checkpoint.State{Phase: checkpoint.PhaseInactive, Since: deletion.Add(1100 * time.Millisecond)}})
		}
		return true, statusMapOf(c.Now(), next), nil
	})

	// Once the checkpoints step down, the scheduler that led is restarting
	// for two more reads.
	unsettled := 0
	var out bytes.Buffer
	d := newDrill(client, c, &out, probe)
	d.Unsettled = func(context.Context) (string, error) {
		unsettled++
		c.Step(time.Second)
		if unsettled <= 2 {
			return "kube-scheduler: 2 of 3 replicas ready", nil
		}
		return "", nil
	}
	r, err := d.Run(ctx)
	if err != nil {
		t.Fatalf("drill failed: %v\n%s", err, out.String())
	}
	deleted := deletes(client)
	slices.Sort(deleted)
	if got := strings.Join(deleted, ","); got != "kube-apiserver-a,kube-apiserver-b,kube-apiserver-c" {
		t.Errorf("deleted %s, want the three API server pods", got)
	}
	if len(r.Deleted) != 3 || r.Requests != 5 || r.FailedRequests != 4 {
		t.Errorf("deleted %v, %d requests, %d failed; want 3 pods, 5 requests, 4 failed", r.Deleted, r.Requests, r.FailedRequests)
	}
	want := map[string][2]Seconds{
		"longest gap":     {r.LongestGap, Seconds(1250 * time.Millisecond)},
		"API back":        {r.APIBack, Seconds(1250 * time.Millisecond)},
		"API steady":      {r.APISteady, Seconds(1250 * time.Millisecond)},
		"DaemonSet ready": {r.DaemonSetReady, Seconds(1250 * time.Millisecond)},
		"stepped down":    {r.SteppedDown, Seconds(1250 * time.Millisecond)},
		"settled":         {r.Settled, Seconds(4250 * time.Millisecond)},
	}
	for name, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s = %s, want %s", name, gw[0], gw[1])
		}
	}
	if statusReads != 6 {
		t.Errorf("read the status %d times, want 6 (two passes over three nodes)", statusReads)
	}
	for _, line := range []string{
		"waiting for the API (down) and new Ready API server pods (0/3)",
		"waiting for cp-1: kube-apiserver-a active",
		"✓ Waiting for the checkpoints to step down",
		"waiting for kube-scheduler: 2 of 3 replicas ready",
		"✓ Waiting for every check to pass",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("progress lacks %q:\n%s", line, out.String())
		}
	}
	b, _ := json.Marshal(r)
	if !strings.Contains(string(b), `"apiBackSeconds":1.250`) {
		t.Errorf("JSON %s does not give apiBackSeconds as seconds", b)
	}

	// The timeline: every probe, and each node's story in order.
	var samples []string
	for _, p := range r.Timeline.Probes {
		samples = append(samples, fmt.Sprintf("%s:%t", p.At, p.OK))
	}
	if got, want := strings.Join(samples, " "), "300ms:false 500ms:false 800ms:false 1s:false 1.3s:true"; got != want {
		t.Errorf("probes %s, want %s", got, want)
	}
	var events []string
	for _, e := range r.Timeline.Events {
		events = append(events, fmt.Sprintf("%s %s %s %s", e.At.Duration(), e.Node, e.What, e.Pod))
	}
	wantEvents := []string{
		"0s cp-1 deleted kube-apiserver-a", "0s cp-2 deleted kube-apiserver-b", "0s cp-3 deleted kube-apiserver-c",
		"1.25s cp-1 ready kube-apiserver-newa", "1.25s cp-2 ready kube-apiserver-newb", "1.25s cp-3 ready kube-apiserver-newc",
		"500ms cp-1 checkpoint-active kube-apiserver-a", "1s cp-2 checkpoint-active kube-apiserver-b",
		"1.25s cp-1 checkpoint-stepped-down kube-apiserver-a", "1.1s cp-2 checkpoint-stepped-down kube-apiserver-b",
	}
	if !slices.Equal(events, wantEvents) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(wantEvents, "\n"))
	}
	if !slices.Equal(r.Timeline.Nodes, controlPlane) {
		t.Errorf("timeline nodes %v, want %v", r.Timeline.Nodes, controlPlane)
	}
}

func TestRunGivesUpWhenTheAPIStaysDown(t *testing.T) {
	c := newClock()
	client := fake.NewClientset(selfHosted(c.Now())...)
	probe := func(context.Context) error {
		c.Step(250 * time.Millisecond)
		return errors.New("connection refused")
	}
	var out bytes.Buffer
	r, err := newDrill(client, c, &out, probe).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the API did not answer again within 2s: connection refused") {
		t.Fatalf("err = %v, want the API to be reported down", err)
	}
	if r.Requests != r.FailedRequests || r.Requests < 8 || r.DaemonSetReady != 0 {
		t.Errorf("result %+v: every request should have failed and nothing recovered", r)
	}
}

func TestSettlingGivesUpAfterTheTimeout(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	d := newDrill(fake.NewClientset(), c, &out, nil)
	d.Unsettled = func(context.Context) (string, error) {
		c.Step(time.Second)
		return "kube-controller-manager: 2 of 3 replicas ready", nil
	}
	r := &Result{SteppedDown: Seconds(10 * time.Second)}
	err := d.awaitSettled(context.Background(), d.Status.Start("Waiting for every check to pass"), c.Now(), r)
	if err == nil || !strings.Contains(err.Error(), "did not pass within 2s of the checkpoints stepping down: kube-controller-manager: 2 of 3 replicas ready") {
		t.Fatalf("err = %v, want the failing check named", err)
	}
	if r.Settled != 0 {
		t.Errorf("settled after %s, though a check never passed", r.Settled)
	}
}
