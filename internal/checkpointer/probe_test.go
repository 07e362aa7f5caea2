package checkpointer

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

func TestLocalProbe(t *testing.T) {
	status, etcdUp := http.StatusOK, true
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		// As the API server: a failing etcd check fails /readyz unless excluded.
		excluded := r.URL.Query()["exclude"]
		if !etcdUp && (!slices.Contains(excluded, "etcd") || !slices.Contains(excluded, "etcd-readiness")) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	pod := func(hostNetwork bool, port int, scheme corev1.URIScheme) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: hostNetwork, Containers: []corev1.Container{{
			Name: "kube-apiserver",
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromInt(port), Scheme: scheme}}},
		}}}}
	}
	probe := LocalProbe(time.Second)
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		status  int
		etcdOut bool
		want    bool
	}{
		{"ready", pod(true, port, corev1.URISchemeHTTPS), http.StatusOK, false, true},
		{"ready but etcd is down: the parent is not what failed", pod(true, port, corev1.URISchemeHTTPS), http.StatusOK, true, true},
		{"shutting down: /readyz fails", pod(true, port, corev1.URISchemeHTTPS), http.StatusInternalServerError, false, false},
		{"gone: connection refused", pod(true, closedPort, corev1.URISchemeHTTPS), http.StatusOK, false, false},
		{"plain HTTP to a TLS port", pod(true, port, corev1.URISchemeHTTP), http.StatusOK, false, false},
		{"not on the host network: cannot tell", pod(false, closedPort, corev1.URISchemeHTTPS), http.StatusOK, false, true},
		{"no readiness probe: cannot tell", &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c"}}}}, http.StatusOK, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, etcdUp = tc.status, !tc.etcdOut
			if got := probe(tc.pod); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// Every API server pod is deleted and the API goes down while the deleted
// parents still run out their termination grace. A parent that fails its
// readiness probe is not Ready, so the checkpoint activates after the
// activation grace instead of after the parent's grace period.
func TestAParentShuttingDownWithTheAPIDownActivatesItsCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name      string
		probe     bool
		wantPhase checkpoint.Phase
	}{
		{"the parent fails its probe", false, checkpoint.PhaseActive},
		{"the parent passes its probe", true, checkpoint.PhaseInactive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, nil)
			running := localPod{name: parentName, uid: string(n.parent.UID), ready: true,
				containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}}
			n.cri.set(running)
			n.step(t, 0)
			probed := 0
			n.r.Probe = func(p *corev1.Pod) bool {
				probed++
				if p == nil || p.Name != parentName {
					t.Errorf("probed %v, want the checkpoint's spec of %s", p, parentName)
				}
				return tc.probe
			}
			n.api.down.Store(true)
			for range 3 {
				n.step(t, 5*time.Second)
			}
			if got := n.r.states[Key(testNS, parentName)].Phase; got != tc.wantPhase {
				t.Errorf("after 15 s with the API down the checkpoint is %s, want %s", got, tc.wantPhase)
			}
			if probed == 0 {
				t.Error("the parent was never probed")
			}
			file := filepath.Join(n.disk.ManifestDir, manifestName(testNS, parentName))
			if exists(file) != (tc.wantPhase == checkpoint.PhaseActive) {
				t.Errorf("manifest present %t in phase %s", exists(file), tc.wantPhase)
			}
		})
	}
}
