package checkpointer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointtest"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

const parentName = "kube-apiserver-x7k2p"

// TestReconcileTransitions drives every row of the state machine's table
// through the real I/O: a CRI v1 gRPC server on a unix socket, client-go's
// fake clientset, and a temporary disk. "Not Ready" takes a different form
// on alternate rows: a crash-looping container in a live sandbox, or a
// running container that the API reports not Ready (too young when the API
// is down).
func TestReconcileTransitions(t *testing.T) {
	cri := startCRI(t)
	for i, tr := range checkpointtest.Transitions {
		t.Run(tr.String(), func(t *testing.T) {
			crashLoop := i%2 == 0
			d := testDisk(t)
			clk := testingclock.NewFakeClock(testNow)
			parent := parentPod(parentName, tr.Ready || crashLoop)
			objects := []runtime.Object{daemonSet(), statusConfigMap(), extraSecret()}
			if tr.InAPI {
				objects = append(objects, parent)
			}
			api := newAPI(objects...)
			api.down.Store(!tr.APIUp)

			ctr := localCtr{running: true, age: time.Hour}
			switch {
			case tr.Ready:
			case crashLoop:
				ctr = localCtr{running: false, age: 5 * time.Second}
			case !tr.APIUp:
				ctr = localCtr{running: true, age: 2 * time.Second}
			}
			cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
				containers: map[string]localCtr{"kube-apiserver": ctr}})

			key := Key(testNS, parentName)
			if tr.From != checkpoint.PhaseNone {
				cp, _, err := checkpoint.Sanitize(parent, d.SecretDir)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.WriteInactive(cp); err != nil {
					t.Fatal(err)
				}
				if tr.From == checkpoint.PhaseActive {
					if err := d.Activate(testNS, parentName); err != nil {
						t.Fatal(err)
					}
				}
			}
			r := newReconciler(t, cri, api, d, clk, nil)
			r.states = map[string]checkpoint.State{key: tr.Start()}
			r.copied = map[string]time.Time{}

			if _, err := r.Reconcile(context.Background()); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			got, known := r.states[key]
			if !known {
				// The reconciler forgets removed checkpoints and bare parents;
				// the disk checks below tell the two apart.
				got.Phase = checkpoint.PhaseNone
				if tr.Want == checkpoint.PhaseRemoved {
					got.Phase = checkpoint.PhaseRemoved
				}
			}
			if got.Phase != tr.Want || got.Pending != tr.WantPending {
				t.Fatalf("state = %s(%s), want %s(%s)", got.Phase, got.Pending, tr.Want, tr.WantPending)
			}
			file := manifestName(testNS, parentName)
			active := exists(filepath.Join(d.ManifestDir, file))
			inactive := exists(filepath.Join(d.InactiveDir, file))
			copies := exists(filepath.Join(d.SecretDir, testNS, parentName))
			// Copies are written only by a refresh, which needs the API and a Ready parent.
			kept := tr.Want == checkpoint.PhaseActive || tr.Want == checkpoint.PhaseInactive
			want := [3]bool{tr.Want == checkpoint.PhaseActive, kept, kept && tr.APIUp && tr.InAPI && tr.Ready}
			if gotDisk := [3]bool{active, inactive, copies}; gotDisk != want {
				t.Fatalf("disk (active, inactive, copies) = %v, want %v", gotDisk, want)
			}
			if tr.Want == checkpoint.PhaseInactive && tr.APIUp && tr.InAPI && tr.Ready {
				b, err := os.ReadFile(filepath.Join(d.SecretDir, testNS, parentName, "extra", "key.pem"))
				if err != nil || string(b) != "secret-key" {
					t.Fatalf("secret copy = %q, %v; want the secret's key", b, err)
				}
			}
		})
	}
}

// TestOutageAndOneHandOver plays a full outage: the checkpoint takes over
// while nothing runs, then hands port 6443 back to the returning parent once,
// even though the parent flaps during the hand-over grace.
func TestOutageAndOneHandOver(t *testing.T) {
	var logs bytes.Buffer
	n := newTestNode(t, slog.New(slog.NewJSONHandler(&logs, nil)))
	cri, d, api, r, parent := n.cri, n.disk, n.api, n.r, n.parent
	running := localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}}
	step := func(d time.Duration) { t.Helper(); n.step(t, d) }
	phase := func() checkpoint.Phase { return r.states[Key(testNS, parentName)].Phase }
	file := filepath.Join(d.ManifestDir, manifestName(testNS, parentName))

	cri.set(running)
	step(0)
	if phase() != checkpoint.PhaseInactive {
		t.Fatalf("a Ready parent got %s, want inactive", phase())
	}
	// Every control-plane node reboots: nothing runs and the API is down.
	cri.set()
	api.down.Store(true)
	step(5 * time.Second)
	step(5 * time.Second)
	if phase() != checkpoint.PhaseInactive {
		t.Fatalf("activated before the grace: %s", phase())
	}
	step(5 * time.Second)
	if phase() != checkpoint.PhaseActive || !exists(file) {
		t.Fatalf("after the activation grace got %s (manifest %t), want active", phase(), exists(file))
	}
	// The checkpoint brings the API back; the kubelet starts the parent next to it.
	api.down.Store(false)
	young := running
	young.containers = map[string]localCtr{"kube-apiserver": {running: true, age: 0}}
	cri.set(young)
	step(5 * time.Second)
	// It becomes Ready, then crashes once inside the hand-over grace.
	cri.set(running)
	step(5 * time.Second)
	step(20 * time.Second)
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: false, age: time.Second}}})
	step(5 * time.Second)
	if phase() != checkpoint.PhaseActive {
		t.Fatalf("a flapping parent got %s, want the checkpoint still active", phase())
	}
	cri.set(running)
	for range 8 {
		step(5 * time.Second)
	}
	if phase() != checkpoint.PhaseInactive || exists(file) {
		t.Fatalf("after a stable hand-over grace got %s (manifest %t), want inactive", phase(), exists(file))
	}
	for range 10 {
		step(5 * time.Second)
	}
	handOvers := strings.Count(logs.String(), `"from":"active","to":"inactive"`)
	activations := strings.Count(logs.String(), `"from":"inactive","to":"active"`)
	if handOvers != 1 || activations != 1 {
		t.Fatalf("got %d activations and %d hand-overs, want exactly one of each; log:\n%s", activations, handOvers, logs.String())
	}
}

// TestStaleReadyAfterRebootKeepsTheCheckpoint: after every control-plane node
// rebooted, the API still holds the parent's Ready from the last boot while
// the kubelet runs a new container that has not served yet. The checkpoint
// must keep the node until the kubelet reports that container Ready.
func TestStaleReadyAfterRebootKeepsTheCheckpoint(t *testing.T) {
	n := newTestNode(t, quietLog())
	cri, api, r, parent := n.cri, n.api, n.r, n.parent
	step := func(d time.Duration) { t.Helper(); n.step(t, d) }
	phase := func() checkpoint.Phase { return r.states[Key(testNS, parentName)].Phase }
	boot := func(id string) localPod {
		return localPod{name: parentName, uid: string(parent.UID), ready: true,
			containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour, boot: id}}}
	}

	cri.set(boot(""))
	step(0)
	cri.set()
	api.down.Store(true)
	for range 3 {
		step(5 * time.Second)
	}
	if phase() != checkpoint.PhaseActive {
		t.Fatalf("during the outage got %s, want active", phase())
	}
	// The API is back, still saying Ready about the last boot's container.
	api.down.Store(false)
	cri.set(boot("-2"))
	for range 8 { // longer than the hand-over grace
		step(5 * time.Second)
		if phase() != checkpoint.PhaseActive {
			t.Fatalf("handed over on the last boot's Ready: got %s, want active", phase())
		}
	}
	// The kubelet reports the new container Ready.
	p := parent.DeepCopy()
	p.Status = readyStatus(parentName, true, "-2")
	if _, err := api.cs.CoreV1().Pods(testNS).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 8 { // the hand-over grace
		step(5 * time.Second)
	}
	if phase() != checkpoint.PhaseInactive {
		t.Fatalf("after the kubelet reported the new container Ready got %s, want inactive", phase())
	}
}

// TestBusyWhileACheckpointWaits: the reconcile loop speeds up only while a
// checkpoint other than the checkpointer's own waits to activate or to hand
// over, not for as long as one serves.
func TestBusyWhileACheckpointWaits(t *testing.T) {
	n := newTestNode(t, quietLog())
	running := localPod{name: parentName, uid: string(n.parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}}
	phase := func() checkpoint.Phase { return n.r.states[Key(testNS, parentName)].Phase }
	self, token := checkpointerPod()
	for _, o := range []runtime.Object{self, token} {
		if err := n.api.cs.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	n.cri.set(running)
	if res := n.step(t, 0); res.Busy || n.r.states[Key(testNS, testSelf)].Phase != checkpoint.PhaseActive {
		t.Fatalf("busy = %t with only an inactive checkpoint and the checkpointer's own (%s)", res.Busy, n.r.states[Key(testNS, testSelf)].Phase)
	}
	n.cri.set()
	if res := n.step(t, time.Second); !res.Busy {
		t.Fatal("not busy while waiting to activate")
	}
	if res := n.step(t, testGrace.Activate); res.Busy || phase() != checkpoint.PhaseActive {
		t.Fatalf("busy = %t once active (%s), with the parent still down", res.Busy, phase())
	}
	n.cri.set(running)
	if res := n.step(t, time.Second); !res.Busy {
		t.Fatal("not busy while waiting to hand over")
	}
	if res := n.step(t, testGrace.HandOver); res.Busy || phase() != checkpoint.PhaseInactive {
		t.Fatalf("busy = %t after the hand-over (%s)", res.Busy, phase())
	}
}

// recordingStore logs the calls that remove files.
type recordingStore struct {
	Disk
	calls []string
}

func (s *recordingStore) Remove(ns, name string) error {
	s.calls = append(s.calls, "remove "+name)
	return s.Disk.Remove(ns, name)
}

func TestTeardownRemovesEveryCheckpointThenItsOwn(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	self := parentPod(testSelf, true)
	others := []*corev1.Pod{parentPod("kube-apiserver-aaaaa", true), parentPod("kube-scheduler-zzzzz", true)}
	api := newAPI(daemonSet(), statusConfigMap(), extraSecret(), self, others[0], others[1])
	store := &recordingStore{Disk: d}
	r := newReconciler(t, cri, api, d, clk, nil)
	r.Store = store
	var pods []localPod
	for _, p := range append(others, self) {
		pods = append(pods, localPod{name: p.Name, uid: string(p.UID), ready: true,
			containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})
	}
	cri.set(pods...)
	ctx := context.Background()
	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(d.ManifestDir, manifestName(testNS, testSelf))) {
		t.Fatal("the checkpointer's own checkpoint is not active")
	}
	st, err := checkpoint.ReadNodeStatus(ctx, api.cs.CoreV1().ConfigMaps(testNS), testNode)
	if err != nil || len(st.Checkpoints) != 3 {
		t.Fatalf("status = %+v, %v; want three checkpoints", st, err)
	}

	// The DaemonSet is deleted: its pods go, and only the static copy is left.
	if err := api.cs.AppsV1().DaemonSets(testNS).Delete(ctx, testDS, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(others, self) {
		api.cs.CoreV1().Pods(testNS).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	res, err := r.Reconcile(ctx)
	if err != nil || res.TornDown || len(store.calls) != 0 {
		t.Fatalf("teardown must wait for the grace period; got %+v, %v, calls %v", res, err, store.calls)
	}
	clk.Step(testGrace.Remove)
	res, err = r.Reconcile(ctx)
	if err != nil || !res.TornDown {
		t.Fatalf("got %+v, %v; want a completed teardown", res, err)
	}
	want := []string{"remove kube-apiserver-aaaaa", "remove kube-scheduler-zzzzz", "remove " + testSelf}
	if !slices.Equal(store.calls, want) {
		t.Fatalf("removals = %v, want %v", store.calls, want)
	}
	for _, dir := range []string{d.ManifestDir, d.InactiveDir, d.SecretDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			t.Errorf("%s still holds %s", dir, e.Name())
		}
	}
	if _, err := checkpoint.ReadNodeStatus(ctx, api.cs.CoreV1().ConfigMaps(testNS), testNode); err == nil {
		t.Error("the node's status survived the teardown")
	}
}

func TestTeardownNeedsTheAPIToSayTheDaemonSetIsGone(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	self := parentPod(testSelf, true)
	api := newAPI(statusConfigMap(), extraSecret(), self) // no DaemonSet
	r := newReconciler(t, cri, api, d, clk, nil)
	cri.set(localPod{name: testSelf, uid: string(self.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})
	ctx := context.Background()
	r.Reconcile(ctx)
	// The API goes down half-way: the clock of the teardown must restart.
	clk.Step(testGrace.Remove / 2)
	api.down.Store(true)
	r.Reconcile(ctx)
	api.down.Store(false)
	clk.Step(testGrace.Remove / 2)
	if res, _ := r.Reconcile(ctx); res.TornDown {
		t.Fatal("tore down although the API was not continuously reporting the DaemonSet gone")
	}
	clk.Step(testGrace.Remove)
	if res, _ := r.Reconcile(ctx); !res.TornDown {
		t.Fatal("no teardown after a full grace period without the DaemonSet")
	}
}

func TestSelfCheckpointIsActiveAndSanitized(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	self, token := checkpointerPod()
	api := newAPI(daemonSet(), statusConfigMap(), token, self)
	r := newReconciler(t, cri, api, d, clk, nil)
	cri.set()
	if _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	pod, err := readPod(filepath.Join(d.ManifestDir, manifestName(testNS, testSelf)))
	if err != nil {
		t.Fatalf("own checkpoint not active: %v", err)
	}
	if checkpoint.CheckpointOf(pod) != testSelf || pod.Spec.ServiceAccountName != "" {
		t.Fatalf("own checkpoint not sanitized: %+v", pod.ObjectMeta)
	}
	b, err := os.ReadFile(filepath.Join(d.SecretDir, testNS, testSelf, "token", "token"))
	if err != nil || string(b) != "long-lived" {
		t.Fatalf("token copy = %q, %v", b, err)
	}
}

func TestStaticCopyYieldsToDaemonSetPod(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	api := newAPI(daemonSet(), statusConfigMap())
	r := newReconciler(t, cri, api, d, clk, nil)
	r.PodName = testSelf + "-" + testNode // the static copy's name
	checkpointSandbox := localPod{name: r.PodName, ready: true,
		annotations: map[string]string{checkpoint.CheckpointOfAnnotation: testSelf, checkpoint.ConfigSourceAnnotation: "file"},
		containers:  map[string]localCtr{"checkpointer": {running: true, age: time.Hour}}}
	newDaemonSetPod := localPod{name: "pod-checkpointer-fghij", ready: true,
		containers: map[string]localCtr{"checkpointer": {running: true, age: 0}}}
	ctx := context.Background()

	cri.set(checkpointSandbox)
	if res, _ := r.Reconcile(ctx); res.Yield {
		t.Fatal("yielded to itself")
	}
	cri.set(checkpointSandbox, newDaemonSetPod)
	if res, _ := r.Reconcile(ctx); !res.Yield {
		t.Fatal("did not yield to a running DaemonSet pod")
	}
	r.PodName = testSelf // the DaemonSet copy never yields
	if res, _ := r.Reconcile(ctx); res.Yield {
		t.Fatal("the DaemonSet copy yielded")
	}
}

func TestReconcileWithoutRuntimeDoesNothing(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	parent := parentPod(parentName, true)
	cp, _, _ := checkpoint.Sanitize(parent, d.SecretDir)
	d.WriteInactive(cp)
	api := newAPI(daemonSet(), statusConfigMap(), extraSecret(), parent)
	r := newReconciler(t, cri, api, d, clk, nil)
	cri.grpc.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	clk.Step(time.Hour)
	if _, err := r.Reconcile(ctx); err == nil {
		t.Fatal("reconcile succeeded without a container runtime")
	}
	if exists(filepath.Join(d.ManifestDir, manifestName(testNS, parentName))) {
		t.Fatal("a checkpoint was activated without knowing what runs")
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	n := newTestNode(t, nil)
	cri, clk, r, parent := n.cri, n.clk, n.r, n.parent
	get := handlerGetter(t, Handler(r, 30*time.Second))
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz before any reconcile = %d, want 503", code)
	}
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})
	r.Reconcile(context.Background())
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz after a reconcile = %d, want 200", code)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`pod_checkpointer_checkpoints{state="inactive"} 1`,
		`pod_checkpointer_transitions_total{from="none",to="inactive"} 1`,
		`pod_checkpointer_errors_total{kind="cri"} 0`,
		`pod_checkpointer_api_up 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	clk.Step(time.Minute)
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz with a stale reconcile = %d, want 503", code)
	}
}

// handlerGetter serves h and returns a GET of a path on it: the status and the body.
func handlerGetter(t *testing.T, h http.Handler) func(path string) (int, string) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// A revoked token is not an API server that is down: the pod goes unready,
// the metric says so and the log names the cause, and an active checkpoint
// is still never removed on the word of an API that cannot see.
func TestRefusedCredentialsAreAnErrorStateNotAnOutage(t *testing.T) {
	var logs bytes.Buffer
	n := newTestNode(t, slog.New(slog.NewJSONHandler(&logs, nil)))
	n.cri.set(runningLocal(n.parent))
	get := handlerGetter(t, Handler(n.r, 30*time.Second))
	n.step(t, time.Second)
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz = %d before the token is revoked", code)
	}
	var revoked atomic.Bool
	revoked.Store(true)
	n.api.cs.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if revoked.Load() {
			return true, nil, apierrors.NewUnauthorized("the token has been revoked")
		}
		return false, nil, nil
	})
	n.step(t, time.Second)
	code, body := get("/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "refuses this checkpointer's credentials") || !strings.Contains(body, "revoked") {
		t.Fatalf("healthz with a revoked token = %d %q, want 503 naming the cause", code, body)
	}
	if _, m := get("/metrics"); !strings.Contains(m, "pod_checkpointer_api_credentials_refused 1") {
		t.Error("the metric does not show the refusal")
	}
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"the API server refuses this checkpointer's credentials`) {
		t.Errorf("no error logged: %s", logs.String())
	}
	if !exists(filepath.Join(n.disk.InactiveDir, manifestName(testNS, parentName))) {
		t.Error("the checkpoint went while the API refused to answer")
	}
	revoked.Store(false)
	n.step(t, time.Second)
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("healthz = %d after the token is accepted again", code)
	}
	if _, m := get("/metrics"); !strings.Contains(m, "pod_checkpointer_api_credentials_refused 0") {
		t.Error("the metric still shows the refusal")
	}
}

func TestVolumeCopiesAreRefreshed(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	parent := parentPod(parentName, true)
	api := newAPI(daemonSet(), statusConfigMap(), extraSecret(), parent)
	r := newReconciler(t, cri, api, d, clk, nil)
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})
	ctx := context.Background()
	r.Reconcile(ctx)
	s := extraSecret()
	s.Data = map[string][]byte{"key.pem": []byte("rotated")}
	if _, err := api.cs.CoreV1().Secrets(testNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d.SecretDir, testNS, parentName, "extra", "key.pem")
	clk.Step(5 * time.Second)
	r.Reconcile(ctx)
	if b, _ := os.ReadFile(path); string(b) != "secret-key" {
		t.Fatalf("copy changed before the refresh period: %q", b)
	}
	clk.Step(time.Minute)
	r.Reconcile(ctx)
	if b, _ := os.ReadFile(path); string(b) != "rotated" {
		t.Fatalf("copy = %q after the refresh period, want the rotated secret", b)
	}
}

func TestMissingSecretKeepsNoCheckpoint(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	parent := parentPod(parentName, true)
	api := newAPI(daemonSet(), statusConfigMap(), parent) // the secret is missing
	r := newReconciler(t, cri, api, d, clk, nil)
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})
	if _, err := r.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "apiserver-extra") {
		t.Fatalf("err = %v, want one naming the missing secret", err)
	}
	if exists(filepath.Join(d.InactiveDir, manifestName(testNS, parentName))) {
		t.Fatal("a checkpoint was written without its volume copy")
	}
	if got := r.states[Key(testNS, parentName)].Phase; got != checkpoint.PhaseNone {
		t.Fatalf("state = %s, want none", got)
	}
}

func TestRepeatedErrorIsLoggedOnce(t *testing.T) {
	cri := startCRI(t)
	d := testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	parent := parentPod(parentName, true)
	parent.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "P", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}}
	api := newAPI(daemonSet(), statusConfigMap(), extraSecret(), parent)
	var logs bytes.Buffer
	r := newReconciler(t, cri, api, d, clk, slog.New(slog.NewJSONHandler(&logs, nil)))
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})
	for range 5 {
		clk.Step(5 * time.Second)
		r.Reconcile(context.Background())
	}
	if n := strings.Count(logs.String(), "checkpoint not up to date"); n != 1 {
		t.Fatalf("the same error was logged %d times, want once", n)
	}
	if !strings.Contains(logs.String(), "reads variable P from a secret") {
		t.Fatalf("the log does not say why: %s", logs.String())
	}
}

// TestBadRolloutKeepsTheLastGoodSpec: the DaemonSet replaces the parent with
// a pod that crash-loops. Its checkpoint takes over and stays, however long
// the rollout is stuck; the bad spec is never checkpointed; once a good
// successor is Ready the old checkpoint hands over and goes.
func TestBadRolloutKeepsTheLastGoodSpec(t *testing.T) {
	n := newTestNode(t, nil)
	cri, d, r, old := n.cri, n.disk, n.r, n.parent
	ctx := context.Background()
	pods := n.api.cs.CoreV1().Pods(testNS)
	step := func(d time.Duration) { t.Helper(); n.step(t, d) }
	phase := func(name string) checkpoint.Phase { return r.states[Key(testNS, name)].Phase }
	oldFile := filepath.Join(d.ManifestDir, manifestName(testNS, parentName))
	running := func(p *corev1.Pod, ok bool) localPod {
		age := time.Hour
		if !ok {
			age = time.Second
		}
		return localPod{name: p.Name, uid: string(p.UID), ready: true,
			containers: map[string]localCtr{"kube-apiserver": {running: ok, age: age}}}
	}

	cri.set(running(old, true))
	step(0)
	if phase(parentName) != checkpoint.PhaseInactive {
		t.Fatalf("the good parent got %s, want inactive", phase(parentName))
	}
	cp, _, _ := checkpoint.Sanitize(old, d.SecretDir)
	if checkpoint.Owner(cp) != "DaemonSet/kube-apiserver" {
		t.Fatalf("the checkpoint's owner is %q, want DaemonSet/kube-apiserver", checkpoint.Owner(cp))
	}

	// The rollout deletes the parent and creates a successor with a bad flag.
	bad := parentPod("kube-apiserver-bad01", false)
	bad.Spec.Containers[0].Command = append(bad.Spec.Containers[0].Command, "--no-such-flag")
	if err := pods.Delete(ctx, parentName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cri.set(running(bad, false))
	step(5 * time.Second) // the activation grace starts
	step(5 * time.Second)
	if phase(parentName) != checkpoint.PhaseInactive {
		t.Fatalf("activated before the grace: %s", phase(parentName))
	}
	step(5 * time.Second)
	if phase(parentName) != checkpoint.PhaseActive || !exists(oldFile) {
		t.Fatalf("under a crash-looping successor the checkpoint is %s (manifest %t), want active", phase(parentName), exists(oldFile))
	}
	for range 24 { // two minutes, twice the removal grace
		step(5 * time.Second)
	}
	if phase(parentName) != checkpoint.PhaseActive || !exists(oldFile) {
		t.Fatalf("the last good spec left while the rollout was stuck: %s (manifest %t)", phase(parentName), exists(oldFile))
	}
	if p := phase(bad.Name); p != checkpoint.PhaseNone && p != "" {
		t.Fatalf("the crash-looping successor got a %s checkpoint", p)
	}
	for _, dir := range []string{d.ManifestDir, d.InactiveDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); strings.Contains(string(b), "--no-such-flag") {
				t.Fatalf("%s holds the bad flag", e.Name())
			}
		}
	}

	// Rolled back: a good successor replaces the bad one and becomes Ready.
	good := parentPod("kube-apiserver-good2", true)
	if err := pods.Delete(ctx, bad.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, good, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cri.set(running(good, true))
	step(5 * time.Second)
	if phase(good.Name) != checkpoint.PhaseInactive || phase(parentName) != checkpoint.PhaseActive {
		t.Fatalf("after the rollback: successor %s, old %s; want inactive and still active", phase(good.Name), phase(parentName))
	}
	for range 6 {
		step(5 * time.Second)
	}
	if exists(oldFile) || exists(filepath.Join(d.InactiveDir, manifestName(testNS, parentName))) {
		t.Fatal("the old checkpoint stayed after the successor was Ready for the hand-over grace")
	}
	if phase(good.Name) != checkpoint.PhaseInactive {
		t.Fatalf("the good successor's checkpoint is %s, want inactive", phase(good.Name))
	}
}

// An old checkpoint still inside its removal grace when the API goes down
// must not run beside its successor's checkpoint: two API servers of one
// DaemonSet would split the node's port between two specs. Only the
// checkpoint of the newer parent activates.
func TestOnlyTheNewestCheckpointOfAnOwnerRuns(t *testing.T) {
	n := newTestNode(t, slog.New(slog.DiscardHandler))
	cri, api, r := n.cri, n.api, n.r
	old := n.parent
	old.CreationTimestamp = metav1.NewTime(testNow.Add(-2 * time.Hour))
	api.cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), old, testNS)
	cri.set(runningLocal(old))
	n.step(t, 0)

	// The DaemonSet replaces the pod: the new one is Ready here, the old one gone.
	successor := parentPod("kube-apiserver-b8m3q", true)
	successor.CreationTimestamp = metav1.NewTime(testNow.Add(-time.Minute))
	if err := api.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, old.Name); err != nil {
		t.Fatal(err)
	}
	if err := api.cs.Tracker().Add(successor); err != nil {
		t.Fatal(err)
	}
	cri.set(runningLocal(successor))
	n.step(t, 5*time.Second)
	phase := func(name string) checkpoint.Phase { return r.states[Key(testNS, name)].Phase }
	if phase(old.Name) != checkpoint.PhaseInactive || phase(successor.Name) != checkpoint.PhaseInactive {
		t.Fatalf("before the outage: old %s, successor %s; want both inactive", phase(old.Name), phase(successor.Name))
	}

	// The API goes down inside the old checkpoint's removal grace; nothing runs.
	api.down.Store(true)
	cri.set()
	for range 4 {
		n.step(t, 5*time.Second)
	}
	if phase(successor.Name) != checkpoint.PhaseActive || !exists(filepath.Join(n.disk.ManifestDir, manifestName(testNS, successor.Name))) {
		t.Errorf("the successor's checkpoint is %s, want active", phase(successor.Name))
	}
	if phase(old.Name) != checkpoint.PhaseInactive || exists(filepath.Join(n.disk.ManifestDir, manifestName(testNS, old.Name))) {
		t.Errorf("the old checkpoint is %s, want inactive beside its successor's", phase(old.Name))
	}
}

// A Ready successor that cannot be checkpointed (here it mounts a claim,
// which a static pod cannot) does not take its predecessor's checkpoint
// away: that one stays on disk, the node's only way back if the API goes.
func TestAnUncheckpointableSuccessorLeavesTheOldCheckpoint(t *testing.T) {
	n := newTestNode(t, slog.New(slog.DiscardHandler))
	cri, api, r := n.cri, n.api, n.r
	old := n.parent
	cri.set(runningLocal(old))
	n.step(t, 0)

	successor := parentPod("kube-apiserver-b8m3q", true)
	successor.Spec.Volumes = append(successor.Spec.Volumes, corev1.Volume{Name: "data",
		VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}})
	if err := api.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, old.Name); err != nil {
		t.Fatal(err)
	}
	if err := api.cs.Tracker().Add(successor); err != nil {
		t.Fatal(err)
	}
	cri.set(runningLocal(successor))
	for range 30 { // five minutes, five times the removal grace
		n.clk.Step(10 * time.Second)
		// Each pass reports that the successor cannot be checkpointed.
		if _, err := r.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "from a claim") {
			t.Fatalf("reconcile: %v, want the successor's claim refused", err)
		}
	}
	if got := r.states[Key(testNS, old.Name)].Phase; got != checkpoint.PhaseInactive || !exists(filepath.Join(n.disk.InactiveDir, manifestName(testNS, old.Name))) {
		t.Errorf("the old checkpoint is %s, want inactive and on disk", got)
	}
	if exists(filepath.Join(n.disk.InactiveDir, manifestName(testNS, successor.Name))) {
		t.Fatal("the successor was checkpointed after all; the test proves nothing")
	}
}

// apiServerDaemonSet is the owner of parentPod: it runs on control-plane nodes.
func apiServerDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: testNS},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"node-role.kubernetes.io/control-plane": ""},
			Tolerations:  []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		}}}}
}

func controlPlaneNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}}}
}

// Every API server pod is deleted and nothing can create or schedule the
// replacements for a long while (bootkube #824): the checkpoint brings the
// API back and keeps serving however long that takes, because the
// DaemonSet still wants a pod on the node. Once the DaemonSet is deleted,
// the checkpoint goes after the removal grace.
func TestACheckpointServesUntilTheReplacementRuns(t *testing.T) {
	n := newTestNode(t, slog.New(slog.DiscardHandler))
	cri, api, r, parent := n.cri, n.api, n.r, n.parent
	for _, o := range []runtime.Object{apiServerDaemonSet(), controlPlaneNode()} {
		if err := api.cs.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	cri.set(runningLocal(parent))
	n.step(t, 0)

	// The pod is deleted: its process stops, the API goes with it.
	if err := api.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, parentName); err != nil {
		t.Fatal(err)
	}
	cri.set()
	api.down.Store(true)
	phase := func() checkpoint.Phase { return r.states[Key(testNS, parentName)].Phase }
	for range 4 {
		n.step(t, 5*time.Second)
	}
	if phase() != checkpoint.PhaseActive {
		t.Fatalf("with the API down got %s, want active", phase())
	}
	// The checkpoint serves the API; no replacement appears for ten minutes.
	api.down.Store(false)
	for range 60 {
		n.step(t, 10*time.Second)
		if phase() != checkpoint.PhaseActive {
			t.Fatalf("%s into the wait for a replacement the checkpoint is %s, want active", n.clk.Since(testNow), phase())
		}
	}
	// A DaemonSet that no longer exists wants no pod here.
	if err := api.cs.Tracker().Delete(appsv1.SchemeGroupVersion.WithResource("daemonsets"), testNS, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		n.step(t, 10*time.Second)
	}
	if _, known := r.states[Key(testNS, parentName)]; known || exists(filepath.Join(n.disk.InactiveDir, manifestName(testNS, parentName))) {
		t.Fatalf("a minute after its DaemonSet went the checkpoint is %s, want removed", phase())
	}
}

// targets decides as the DaemonSet controller does which nodes get a pod.
func TestTargets(t *testing.T) {
	tmpl := &apiServerDaemonSet().Spec.Template
	for _, tc := range []struct {
		name string
		edit func(*corev1.Node)
		want bool
	}{
		{"a control-plane node", func(*corev1.Node) {}, true},
		{"its control-plane label removed", func(n *corev1.Node) { delete(n.Labels, "node-role.kubernetes.io/control-plane") }, false},
		{"a taint it does not tolerate", func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "drain", Effect: corev1.TaintEffectNoExecute})
		}, false},
		{"a PreferNoSchedule taint", func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule})
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := controlPlaneNode()
			tc.edit(node)
			if got, err := targets(tmpl, node); err != nil || got != tc.want {
				t.Errorf("targets = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// A kept token is requested once, reused while more than half its life is
// left, and renewed after that; none is written that never expires.
func TestAKeptTokenIsRenewedAtHalfLife(t *testing.T) {
	cri, d := startCRI(t), testDisk(t)
	clk := testingclock.NewFakeClock(testNow)
	parent := parentPod(parentName, true)
	parent.Annotations[checkpoint.TokenVolumeAnnotation] = "kube-api-access-x1"
	api := newAPI(daemonSet(), statusConfigMap(), extraSecret(), parent,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: testNS}, Data: map[string]string{"ca.crt": "ca"}})
	var requests []time.Duration
	api.cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		life := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
		requests = append(requests, life)
		claims, _ := json.Marshal(map[string]int64{"exp": clk.Now().Add(life).Unix()})
		jwt := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: jwt}}, nil
	})
	r := newReconciler(t, cri, api, d, clk, nil)
	cri.set(runningLocal(parent))
	tokenFile := filepath.Join(d.SecretDir, testNS, parentName, "kube-api-access-x1", "token")
	reconcile := func(after time.Duration) string {
		t.Helper()
		clk.Step(after)
		if _, err := r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := reconcile(time.Second)
	if len(requests) != 1 || requests[0] != DefaultTokenLifetime {
		t.Fatalf("token requests %v, want one of %s", requests, DefaultTokenLifetime)
	}
	if exp, ok := tokenExpiry([]byte(first)); !ok || !exp.Equal(clk.Now().Add(DefaultTokenLifetime).Truncate(time.Second)) {
		t.Fatalf("kept token expires %v (%v)", exp, ok)
	}
	if again := reconcile(2 * time.Minute); again != first || len(requests) != 1 {
		t.Fatalf("a token with most of its life left was replaced (%d requests)", len(requests))
	}
	if renewed := reconcile(DefaultTokenLifetime / 2); renewed == first || len(requests) != 2 {
		t.Fatalf("a token past half its life was not renewed (%d requests)", len(requests))
	}
}
