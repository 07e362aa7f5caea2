package recovery

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
)

// fakeEtcd answers POST /v3/kv/range as etcd's JSON gateway does.
type fakeEtcd map[string][]byte

func (f fakeEtcd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct{ Key string }
	if r.URL.Path != "/v3/kv/range" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	key, _ := base64.StdEncoding.DecodeString(req.Key)
	resp := map[string]any{"header": map[string]string{"revision": "7"}}
	if v, ok := f[string(key)]; ok {
		resp["kvs"] = []map[string]string{{"key": req.Key, "value": base64.StdEncoding.EncodeToString(v)}}
		resp["count"] = "1"
	}
	json.NewEncoder(w).Encode(resp)
}

// stored encodes obj as kube-apiserver stores it: protobuf, with its magic.
func stored(t *testing.T, obj runtime.Object, gv schema.GroupVersion) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := codecs.EncoderForVersion(protobuf.NewSerializer(scheme.Scheme, scheme.Scheme), gv)
	if err := enc.Encode(obj, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("k8s\x00")) {
		t.Fatal("not kube-apiserver's protobuf encoding")
	}
	return buf.Bytes()
}

func apiServerDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: "kube-system", ResourceVersion: "42", UID: "u1"},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			HostNetwork: true,
			Containers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2",
				Command:      []string{"kube-apiserver", "--advertise-address=$(HOST_IP)", "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key"},
				VolumeMounts: []corev1.VolumeMount{{Name: "k8s-certs", MountPath: "/etc/kubernetes/pki"}, {Name: "ca-certs", MountPath: "/etc/ssl/certs"}}}},
			Volumes: []corev1.Volume{
				{Name: "k8s-certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kube-apiserver", Items: []corev1.KeyToPath{
					{Key: "apiserver.key", Path: "apiserver.key"}, {Key: "etcd-ca.crt", Path: "etcd/ca.crt"}}}}},
				{Name: "ca-certs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/ssl/certs"}}},
			},
		}}},
	}
}

var keyPEM = []byte("-----BEGIN EC PRIVATE KEY-----\nsecret\n-----END EC PRIVATE KEY-----\n")

// etcdWith holds a pivoted cluster's objects: the DaemonSet, its Secret, the
// controller manager's Deployment and the recovery record.
func etcdWith(t *testing.T) fakeEtcd {
	ds := apiServerDaemonSet()
	kcm := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager", Namespace: "kube-system"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-controller-manager", Image: "registry.k8s.io/kube-controller-manager:v1.37.2"}}}}}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: "kube-system"}, Data: map[string][]byte{"apiserver.key": keyPEM, "etcd-ca.crt": []byte("etcd CA"), "unused": []byte("x")}}
	dsYAML, err := yaml.Marshal(record.Clean(ds))
	if err != nil {
		t.Fatal(err)
	}
	rec := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: record.Name, Namespace: "kube-system"}, Data: map[string]string{"kube-apiserver.yaml": string(dsYAML)}}
	return fakeEtcd{
		"/registry/daemonsets/kube-system/kube-apiserver":           stored(t, ds, appsv1.SchemeGroupVersion),
		"/registry/deployments/kube-system/kube-controller-manager": stored(t, kcm, appsv1.SchemeGroupVersion),
		"/registry/secrets/kube-system/kube-apiserver":              stored(t, secret, corev1.SchemeGroupVersion),
		"/registry/configmaps/kube-system/" + record.Name:           stored(t, rec, corev1.SchemeGroupVersion),
	}
}

func read(t *testing.T, f fakeEtcd) (*Source, error) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return Read(context.Background(), &Etcd{Endpoint: srv.URL, client: srv.Client()}, "/registry")
}

func TestReadFromEtcd(t *testing.T) {
	s, err := read(t, etcdWith(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.From["kube-apiserver"] != "DaemonSet kube-system/kube-apiserver" || s.Static["kube-controller-manager"] == nil || s.Checkpointer != nil {
		t.Errorf("from %v, static %d, checkpointer %v", s.From, len(s.Static), s.Checkpointer)
	}
	files := s.Files("/r")
	if len(files) != 2 || !bytes.Equal(files["/r/kube-apiserver/k8s-certs/apiserver.key"], keyPEM) || string(files["/r/kube-apiserver/k8s-certs/etcd/ca.crt"]) != "etcd CA" {
		t.Errorf("volume copies: %v", files)
	}
	if strings.Contains(strings.Join(s.Read, "\n"), "BEGIN") || !strings.Contains(strings.Join(s.Read, "\n"), "Secret kube-system/kube-apiserver (2 items)") {
		t.Errorf("what was read: %v", s.Read)
	}

	// The DaemonSet deleted: its copy in the recovery record serves.
	f := etcdWith(t)
	delete(f, "/registry/daemonsets/kube-system/kube-apiserver")
	if s, err = read(t, f); err != nil || s.From["kube-apiserver"] != "the recovery record" || s.APIServer.ResourceVersion != "" {
		t.Errorf("from the record: %v %v", s, err)
	}

	// Nothing to recover from, and a Secret encrypted at rest: refused with
	// a sentence, and no stored byte in it.
	delete(f, "/registry/configmaps/kube-system/"+record.Name)
	if _, err := read(t, f); err == nil || !strings.Contains(err.Error(), "there is no API server spec to recover from") {
		t.Errorf("no spec: %v", err)
	}
	f = etcdWith(t)
	f["/registry/secrets/kube-system/kube-apiserver"] = append([]byte("k8s:enc:aescbc:v1:key1:"), keyPEM...)
	if _, err := read(t, f); err == nil || !strings.Contains(err.Error(), "encrypted at rest by the aescbc provider") || strings.Contains(err.Error(), "BEGIN") {
		t.Errorf("encrypted: %v", err)
	}
	delete(f, "/registry/secrets/kube-system/kube-apiserver")
	if _, err := read(t, f); err == nil || !strings.Contains(err.Error(), "mounts Secret kube-system/kube-apiserver, which etcd does not hold") {
		t.Errorf("missing Secret: %v", err)
	}
}

// The copies are owner-only, the manifests name where their spec came
// from, and recover refuses to take over a static pod it did not write.
func TestRecoverWritesOwnerOnlyAndOnlyItsOwn(t *testing.T) {
	s, err := read(t, etcdWith(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := Options{PodManifestDir: filepath.Join(dir, "manifests"), Dir: filepath.Join(dir, "recover"), NodeName: "cp1"}
	os.Mkdir(o.PodManifestDir, 0o755)
	c, err := NewContext(o, s, fake.NewClientset(), nil, progress.NewStatus(io.Discard, false))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range []Action{&writeVolumeCopies{}, &writeStaticPods{}} {
		if err := a.Execute(ctx, c); err != nil {
			t.Fatal(err)
		}
		if done, _ := a.Done(ctx, c); !done {
			t.Errorf("%s is not done after it ran", a.Name())
		}
	}
	filepath.Walk(dir, func(path string, fi os.FileInfo, _ error) error {
		switch {
		case path == dir || path == o.PodManifestDir:
		case fi.IsDir() && fi.Mode().Perm() != 0o700, !fi.IsDir() && fi.Mode().Perm() != 0o600:
			t.Errorf("%s has mode %v", path, fi.Mode().Perm())
		}
		return nil
	})
	var pod corev1.Pod
	data, _ := os.ReadFile(filepath.Join(o.PodManifestDir, "kube-apiserver.yaml"))
	if err := yaml.UnmarshalStrict(data, &pod); err != nil || pod.Annotations[RecoveredAnnotation] != "DaemonSet kube-system/kube-apiserver" {
		t.Fatalf("manifest: %v %v", err, pod.Annotations)
	}
	if v := pod.Spec.Volumes[0]; v.HostPath == nil || v.HostPath.Path != filepath.Join(o.Dir, "kube-apiserver", "k8s-certs") {
		t.Errorf("the Secret volume reads %+v", v)
	}
	if bytes.Contains(data, []byte("BEGIN")) {
		t.Error("the manifest holds key material")
	}
	if ours, err := c.OursOnDisk(); !ours || err != nil {
		t.Errorf("recover does not see its own static pods: %v %v", ours, err)
	}
	os.WriteFile(filepath.Join(o.PodManifestDir, "kube-controller-manager.yaml"), []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\n"), 0o600)
	if _, err := c.OursOnDisk(); err == nil || !strings.Contains(err.Error(), "recover did not write") {
		t.Errorf("a foreign manifest: %v", err)
	}
}

// Only this node's DaemonSet pods that are not Ready and predate the run are
// replaced: their volume mounts failed while the node reached no API server.
func TestReplaceStalePods(t *testing.T) {
	began := time.Now()
	pod := func(name, node, owner string, created time.Time, ready bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", CreationTimestamp: metav1.NewTime(created),
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: owner}}}, Spec: corev1.PodSpec{NodeName: node}}
		if ready {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		return p
	}
	old := began.Add(-time.Minute)
	client := fake.NewClientset(
		pod("kube-apiserver-stale", "cp2", "kube-apiserver", old, false),
		pod("pod-checkpointer-stale", "cp2", "pod-checkpointer", old, false),
		pod("kube-apiserver-ready", "cp2", "kube-apiserver", old, true),
		pod("kube-apiserver-new", "cp2", "kube-apiserver", began.Add(time.Second), false),
		pod("kube-apiserver-other-node", "cp3", "kube-apiserver", old, false),
		pod("flannel-stale", "cp2", "kube-flannel-ds", old, false),
	)
	c := &Context{Options: Options{NodeName: "cp2"}, Client: client, began: began, step: progress.NewStatus(io.Discard, false).Start("test")}
	c.replaceStalePods(context.Background())
	left, _ := client.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	var names []string
	for _, p := range left.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if want := []string{"flannel-stale", "kube-apiserver-new", "kube-apiserver-other-node", "kube-apiserver-ready"}; !slices.Equal(names, want) {
		t.Errorf("pods left %v, want %v", names, want)
	}
}

// A node's Ready condition outlives an outage that took the controller
// manager down too; its kubelet's lease says whether it reaches an API server.
func TestKubeletReachesAPIByItsLease(t *testing.T) {
	lease := func(renewed time.Time) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "cp2", Namespace: "kube-node-lease"}, Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}}}
	}
	ready := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp2"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	for _, tc := range []struct {
		renewed time.Time
		want    bool
	}{{time.Now().Add(-5 * time.Second), true}, {time.Now().Add(-2 * time.Minute), false}} {
		c := &Context{Options: Options{NodeName: "cp2"}, Client: fake.NewClientset(ready, lease(tc.renewed))}
		if got, err := c.KubeletReachesAPI(context.Background()); got != tc.want || err != nil {
			t.Errorf("lease renewed %s ago, node Ready: got %v %v, want %v", time.Since(tc.renewed).Round(time.Second), got, err, tc.want)
		}
	}
}
