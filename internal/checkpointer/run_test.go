package checkpointer

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func serving(addr string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	done := func(context.Context) (bool, error) { return cond(), nil }
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, done); err != nil {
		t.Fatalf("timed out waiting until %s", what)
	}
}

// TestRunHandsTheLockBetweenCopies runs two checkpointers as the DaemonSet
// pod and its static copy do: one acts and serves while the other waits;
// the static copy takes over when the DaemonSet pod stops, and yields when a
// DaemonSet pod runs again.
func TestRunHandsTheLockBetweenCopies(t *testing.T) {
	cri := startCRI(t)
	cri.base = time.Now()
	parent := parentPod(parentName, true)
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/namespaces/kube-system/pods":
			json.NewEncoder(w).Encode(corev1.PodList{Items: []corev1.Pod{*parent}})
		case "/api/v1/namespaces/kube-system/secrets/apiserver-extra":
			json.NewEncoder(w).Encode(extraSecret())
		default: // the DaemonSet and the status ConfigMap
			w.Write([]byte(`{}`))
		}
	}))
	defer api.Close()
	dir := t.TempDir()
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte("t"), 0o600)
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600)
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}})

	d := testDisk(t)
	base := Config{
		Namespace: testNS, Node: testNode, DaemonSet: testDS, Disk: d,
		CRIEndpoint: cri.endpoint, LockFile: filepath.Join(dir, "lock"),
		Server: api.URL, TokenFile: token, CAFile: ca,
		Interval: 50 * time.Millisecond, BusyInterval: 50 * time.Millisecond, Grace: testGrace, MinStable: time.Second,
		RefreshEvery: time.Minute, HeartbeatEvery: time.Minute, TokenLifetime: DefaultTokenLifetime,
	}
	daemonPod, static := base, base
	daemonPod.PodName, daemonPod.Listen = testSelf, freePort(t)
	static.PodName, static.CheckpointOf, static.Listen = testSelf+"-"+testNode, testSelf, freePort(t)

	start := func(c Config) (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, c, quietLog()) }()
		return cancel, done
	}
	stopDaemon, daemonDone := start(daemonPod)
	eventually(t, "the DaemonSet copy serves", func() bool { return serving(daemonPod.Listen) })
	eventually(t, "the parent is checkpointed", func() bool {
		return exists(filepath.Join(d.InactiveDir, manifestName(testNS, parentName)))
	})
	stopStatic, staticDone := start(static)
	time.Sleep(300 * time.Millisecond)
	if serving(static.Listen) {
		t.Fatal("the static copy acts while the DaemonSet copy holds the lock")
	}

	stopDaemon()
	if err := <-daemonDone; err != nil {
		t.Fatalf("Run returned %v after its context ended", err)
	}
	eventually(t, "the static copy takes over", func() bool { return serving(static.Listen) })

	// A DaemonSet pod runs again: the static copy hands the lock back.
	cri.set(localPod{name: parentName, uid: string(parent.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}},
		localPod{name: "pod-checkpointer-fghij", ready: true, containers: map[string]localCtr{"checkpointer": {running: true}}})
	eventually(t, "the static copy yields", func() bool { return !serving(static.Listen) })
	// The DaemonSet pod takes the lock; the static copy must not race it.
	lock := &Lock{Path: base.LockFile}
	eventually(t, "the lock is free", func() bool { ok, _ := lock.TryLock(); return ok })
	time.Sleep(time.Second)
	if serving(static.Listen) {
		t.Fatal("the static copy acts again while the DaemonSet pod holds the lock")
	}
	lock.Unlock()

	stopStatic()
	if err := <-staticDone; err != nil {
		t.Fatalf("Run returned %v after its context ended", err)
	}
}

func TestRunRejectsAnIncompleteConfig(t *testing.T) {
	err := Run(context.Background(), Config{Interval: time.Second, TokenFile: "t", CAFile: "c"}, quietLog())
	if err == nil {
		t.Fatal("Run accepted a config without the downward API values")
	}
}
