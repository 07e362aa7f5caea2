package checkpointer

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

func TestParentPodsFiltersToThisNodesCandidates(t *testing.T) {
	other := parentPod("on-other-node", true)
	other.Spec.NodeName = "node-2"
	plain := parentPod("not-annotated", true)
	plain.Annotations = nil
	mirror := parentPod("static-node-1", true)
	mirror.Annotations[checkpoint.ConfigMirrorAnnotation] = "hash"
	alias := parentPod("bootkube-style", true)
	alias.Annotations = map[string]string{checkpoint.BootkubeCheckpointAnnotation: "true"}
	api := newAPI(parentPod("wanted", true), other, plain, mirror, alias)
	pods, err := api.clientAPI().ParentPods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "bootkube-style,wanted" {
		t.Fatalf("parents = %v, want bootkube-style and wanted", names)
	}
	api.down.Store(true)
	if _, err := api.clientAPI().ParentPods(context.Background()); err == nil {
		t.Fatal("no error with the API down")
	}
}

func TestStatusRoundTripPerNode(t *testing.T) {
	ctx := context.Background()
	api := newAPI(statusConfigMap())
	cms := api.cs.CoreV1().ConfigMaps(testNS)
	since := testNow.Add(-time.Minute)
	for _, node := range []string{"node-1", "node-2"} {
		a := api.clientAPI()
		a.Node = node
		st := checkpoint.NodeStatus{Node: node, Pod: "pod-checkpointer-" + node, Updated: testNow, Checkpoints: []checkpoint.CheckpointStatus{
			{Parent: "kube-apiserver-" + node, State: checkpoint.State{Phase: checkpoint.PhaseActive, Since: since, Pending: checkpoint.PendingHandOver, PendingSince: testNow}},
		}}
		if err := a.PublishStatus(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range []string{"node-1", "node-2"} {
		st, err := checkpoint.ReadNodeStatus(ctx, cms, node)
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		c := st.Checkpoints[0]
		if st.Node != node || c.Parent != "kube-apiserver-"+node || c.Phase != checkpoint.PhaseActive || !c.Since.Equal(since) || c.Pending != checkpoint.PendingHandOver {
			t.Errorf("%s: got %+v", node, st)
		}
	}
	cm, _ := cms.Get(ctx, checkpoint.StatusConfigMap, metav1.GetOptions{})
	var raw map[string]any
	json.Unmarshal([]byte(cm.Data["node-1"]), &raw)
	if cp := raw["checkpoints"].([]any)[0].(map[string]any); cp["state"] != "active" || cp["parent"] != "kube-apiserver-node-1" {
		t.Errorf("published JSON = %s", cm.Data["node-1"])
	}
	if _, err := checkpoint.ReadNodeStatus(ctx, cms, "node-3"); !errors.Is(err, checkpoint.ErrNoStatus) {
		t.Errorf("unreported node: err = %v, want ErrNoStatus", err)
	}
	if err := api.clientAPI().ClearStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.ReadNodeStatus(ctx, cms, "node-1"); !errors.Is(err, checkpoint.ErrNoStatus) {
		t.Errorf("cleared node: err = %v, want ErrNoStatus", err)
	}
	if _, err := checkpoint.ReadNodeStatus(ctx, cms, "node-2"); err != nil {
		t.Errorf("clearing node-1 lost node-2: %v", err)
	}
	if _, err := checkpoint.ReadNodeStatus(ctx, newAPI().cs.CoreV1().ConfigMaps(testNS), "node-1"); !errors.Is(err, checkpoint.ErrNoStatus) || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("no ConfigMap: err = %v", err)
	}
}

func TestDaemonSetGone(t *testing.T) {
	ctx := context.Background()
	if gone, err := newAPI(daemonSet()).clientAPI().DaemonSetGone(ctx); gone || err != nil {
		t.Errorf("present DaemonSet: %t, %v", gone, err)
	}
	if gone, err := newAPI().clientAPI().DaemonSetGone(ctx); !gone || err != nil {
		t.Errorf("missing DaemonSet: %t, %v", gone, err)
	}
	deleting := daemonSet()
	deleting.DeletionTimestamp = &metav1.Time{Time: testNow}
	if gone, err := newAPI(deleting).clientAPI().DaemonSetGone(ctx); !gone || err != nil {
		t.Errorf("DaemonSet being deleted: %t, %v", gone, err)
	}
	down := newAPI(daemonSet())
	down.down.Store(true)
	if gone, err := down.clientAPI().DaemonSetGone(ctx); gone || err == nil {
		t.Errorf("API down: %t, %v; want an error and no verdict", gone, err)
	}
}

func TestVolumeDataMergesConfigMapDataAndBinaryData(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: testNS},
		Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": {2}}}
	data, found, err := newAPI(cm).clientAPI().VolumeData(context.Background(), "ConfigMap", "c")
	if err != nil || !found || string(data["a"]) != "1" || data["b"][0] != 2 {
		t.Fatalf("VolumeData = %v, %t, %v", data, found, err)
	}
	if _, found, err := newAPI().clientAPI().VolumeData(context.Background(), "Secret", "absent"); found || err != nil {
		t.Fatalf("missing secret: %t, %v", found, err)
	}
}

// TestRESTClientSpeaksTheAPI checks the small REST client against a fake
// API server on loopback: paths, field selector, merge patch, and errors.
func TestRESTClientSpeaksTheAPI(t *testing.T) {
	var patched string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer long-lived" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/kube-system/pods":
			if r.URL.Query().Get("fieldSelector") != "spec.nodeName=node-1" {
				http.Error(w, "missing field selector", http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(corev1.PodList{Items: []corev1.Pod{*parentPod("wanted", true)}})
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/kube-system/secrets/apiserver-extra":
			json.NewEncoder(w).Encode(extraSecret())
		case r.Method == http.MethodPatch && r.URL.Path == "/api/v1/namespaces/kube-system/configmaps/"+checkpoint.StatusConfigMap:
			if r.Header.Get("Content-Type") != "application/merge-patch+json" {
				http.Error(w, "wrong patch type", http.StatusUnsupportedMediaType)
				return
			}
			b, _ := io.ReadAll(r.Body)
			patched = string(b)
			json.NewEncoder(w).Encode(statusConfigMap())
		case r.URL.Path == "/apis/apps/v1/namespaces/kube-system/daemonsets/"+testDS:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404})
		case r.Method == http.MethodGet && r.URL.Path == "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-apiserver":
			json.NewEncoder(w).Encode(apiServerDaemonSet())
		case r.Method == http.MethodGet && r.URL.Path == "/apis/apps/v1/namespaces/kube-system/daemonsets/other":
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: 403})
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/kube-system/serviceaccounts/pod-checkpointer/token":
			var tr authenticationv1.TokenRequest
			if json.NewDecoder(r.Body).Decode(&tr) != nil || tr.Spec.ExpirationSeconds == nil || *tr.Spec.ExpirationSeconds != 3600 {
				http.Error(w, "no expiration", http.StatusBadRequest)
				return
			}
			tr.Status.Token = "issued"
			json.NewEncoder(w).Encode(tr)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes/"+testNode:
			json.NewEncoder(w).Encode(controlPlaneNode())
		default:
			http.Error(w, r.Method+" "+r.URL.Path, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte("long-lived\n"), 0o600)
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	if _, err := NewClientAPI(srv.URL, token, token, testNS, testNode, testDS); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without a certificate: err = %v", err)
	}
	api, err := NewClientAPI(srv.URL, token, ca, testNS, testNode, testDS)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pods, err := api.ParentPods(ctx)
	if err != nil || len(pods) != 1 || pods[0].Name != "wanted" {
		t.Fatalf("ParentPods = %v, %v", pods, err)
	}
	data, found, err := api.VolumeData(ctx, "Secret", "apiserver-extra")
	if err != nil || !found || string(data["key.pem"]) != "secret-key" {
		t.Fatalf("VolumeData = %v, %t, %v", data, found, err)
	}
	if gone, err := api.DaemonSetGone(ctx); !gone || err != nil {
		t.Fatalf("DaemonSetGone = %t, %v", gone, err)
	}
	if wants, err := api.OwnerWantsNode(ctx, "DaemonSet/kube-apiserver"); !wants || err != nil {
		t.Fatalf("OwnerWantsNode(kube-apiserver) = %t, %v; want true: it targets control-plane nodes", wants, err)
	}
	if wants, err := api.OwnerWantsNode(ctx, "DaemonSet/other"); wants || err != nil {
		t.Fatalf("OwnerWantsNode(a DaemonSet the Role may not read) = %t, %v; want false", wants, err)
	}
	if tok, err := api.ServiceAccountToken(ctx, "pod-checkpointer", "", time.Hour); err != nil || string(tok) != "issued" {
		t.Fatalf("ServiceAccountToken = %q, %v", tok, err)
	}
	if err := api.PublishStatus(ctx, checkpoint.NodeStatus{Node: testNode}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(patched, `"node-1":`) {
		t.Fatalf("patch body = %s", patched)
	}
	if _, found, err := api.VolumeData(ctx, "ConfigMap", "absent"); found || err != nil {
		t.Fatalf("missing configMap: %t, %v", found, err)
	}
	// The token is re-read on every request, so a rotated token works at once.
	os.WriteFile(token, []byte("rotated"), 0o600)
	if _, err := api.ParentPods(ctx); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("with a token the server refuses: err = %v", err)
	}
}

func TestAPIServerComesFromTheKubeletKubeconfig(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubelet.conf")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: "https://wrong:6443"}
- name: kind
  cluster: {server: "https://kind-control-plane:6443", certificate-authority-data: AAAA}
contexts:
- name: system:node:kind-control-plane@kind
  context: {cluster: kind, user: system:node:kind-control-plane}
current-context: system:node:kind-control-plane@kind
`), 0o600)
	c := Config{KubeletKubeconfig: kc}
	if got, err := APIServer(c); err != nil || got != "https://kind-control-plane:6443" {
		t.Fatalf("APIServer = %q, %v", got, err)
	}
	c.Server = "https://127.0.0.1:6443"
	if got, _ := APIServer(c); got != c.Server {
		t.Fatalf("an explicit server was overridden: %s", got)
	}
	c.Server, c.KubeletKubeconfig = "", filepath.Join(dir, "missing")
	if _, err := APIServer(c); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v, want one naming the missing kubeconfig", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Namespace: testNS, Node: testNode, PodName: testSelf, Interval: time.Second, BusyInterval: time.Second, TokenFile: "t", CAFile: "c", TokenLifetime: DefaultTokenLifetime}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if good.Self() != testSelf {
		t.Errorf("Self of the DaemonSet copy = %s", good.Self())
	}
	good.CheckpointOf = "parent"
	if good.Self() != "parent" {
		t.Errorf("Self of the static copy = %s", good.Self())
	}
	bad := good
	bad.Node = ""
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Errorf("err = %v", err)
	}
	bad = good
	bad.BusyInterval = 0
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "--busy-interval") {
		t.Errorf("without a busy interval: err = %v", err)
	}
}

func TestLazyAPIWaitsForCredentials(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(corev1.PodList{})
	}))
	defer srv.Close()
	dir := t.TempDir()
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	l := &lazyAPI{build: func() (API, error) { return NewClientAPI(srv.URL, token, ca, testNS, testNode, testDS) }}
	ctx := context.Background()
	if _, err := l.ParentPods(ctx); err == nil || !strings.Contains(err.Error(), "CA") {
		t.Fatalf("without credentials: err = %v, want one about the missing CA", err)
	}
	os.WriteFile(token, []byte("t"), 0o600)
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	if _, err := l.ParentPods(ctx); err != nil {
		t.Fatalf("once the token is issued: %v", err)
	}
}
