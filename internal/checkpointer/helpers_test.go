package checkpointer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointtest"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

var (
	testNow   = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	testGrace = checkpoint.Grace{Activate: 10 * time.Second, HandOver: 30 * time.Second, Remove: time.Minute}
)

const (
	testNS   = checkpointtest.Namespace
	testNode = checkpointtest.Node
	testDS   = "pod-checkpointer"
	testSelf = "pod-checkpointer-abcde"
)

// criServer is a real CRI v1 gRPC server on a unix socket, serving the
// sandboxes and containers a test sets, with a client connected through
// k8s.io/cri-client.
type criServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	grpc     *grpc.Server
	cri      *CRI
	endpoint string
	base     time.Time // container ages count back from it

	mu         sync.Mutex
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
}

func startCRI(t *testing.T) *criServer {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "cri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &criServer{grpc: grpc.NewServer(), endpoint: "unix://" + sock, base: testNow}
	runtimeapi.RegisterRuntimeServiceServer(s.grpc, s)
	go s.grpc.Serve(ln)
	t.Cleanup(s.grpc.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.cri, err = DialCRI(ctx, s.endpoint, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *criServer) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "0.1.0", RuntimeApiVersion: "v1"}, nil
}

func (s *criServer) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &runtimeapi.ListPodSandboxResponse{Items: s.sandboxes}, nil
}

func (s *criServer) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &runtimeapi.ListContainersResponse{Containers: s.containers}, nil
}

// localPod describes one sandbox with one attempt per container.
type localPod struct {
	name, uid   string
	ready       bool
	annotations map[string]string
	containers  map[string]localCtr
}

type localCtr struct {
	running bool
	age     time.Duration // how long before testNow it was created
	boot    string        // set after a reboot: the runtime names the new container differently
}

// containerID is the runtime's ID of a container that localPod p runs.
func containerID(pod, name, boot string) string { return "sandbox-" + pod + "-" + name + boot }

func (s *criServer) set(pods ...localPod) {
	var sandboxes []*runtimeapi.PodSandbox
	var ctrs []*runtimeapi.Container
	for _, p := range pods {
		id := "sandbox-" + p.name
		state := runtimeapi.PodSandboxState_SANDBOX_NOTREADY
		if p.ready {
			state = runtimeapi.PodSandboxState_SANDBOX_READY
		}
		sandboxes = append(sandboxes, &runtimeapi.PodSandbox{
			Id:          id,
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: p.name, Namespace: testNS, Uid: p.uid},
			State:       state,
			CreatedAt:   s.base.Add(-time.Hour).UnixNano(),
			Annotations: p.annotations,
		})
		for name, c := range p.containers {
			cs := runtimeapi.ContainerState_CONTAINER_EXITED
			if c.running {
				cs = runtimeapi.ContainerState_CONTAINER_RUNNING
			}
			// An older, exited attempt comes first: the newest one must win.
			ctrs = append(ctrs, &runtimeapi.Container{
				Id: id + "-" + name + "-old", PodSandboxId: id,
				Metadata:  &runtimeapi.ContainerMetadata{Name: name, Attempt: 2},
				State:     runtimeapi.ContainerState_CONTAINER_EXITED,
				CreatedAt: s.base.Add(-2 * time.Hour).UnixNano(),
			}, &runtimeapi.Container{
				Id: containerID(p.name, name, c.boot), PodSandboxId: id,
				Metadata:  &runtimeapi.ContainerMetadata{Name: name, Attempt: 3},
				State:     cs,
				CreatedAt: s.base.Add(-c.age).UnixNano(),
			})
		}
	}
	s.mu.Lock()
	s.sandboxes, s.containers = sandboxes, ctrs
	s.mu.Unlock()
}

// apiServer is client-go's fake clientset with a switch that makes every
// call fail as if the API server were down.
type apiServer struct {
	cs   *fake.Clientset
	down atomic.Bool
}

func newAPI(objects ...runtime.Object) *apiServer {
	a := &apiServer{cs: fake.NewClientset(objects...)}
	a.cs.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if a.down.Load() {
			return true, nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
		}
		return false, nil, nil
	})
	return a
}

func (a *apiServer) clientAPI() ClientAPI {
	c := a.cs.CoreV1()
	return ClientAPI{
		Pods: c.Pods(testNS), Secrets: c.Secrets(testNS), ConfigMaps: c.ConfigMaps(testNS),
		DaemonSets: a.cs.AppsV1().DaemonSets(testNS), Nodes: c.Nodes(), Tokens: c.ServiceAccounts(testNS),
		Namespace: testNS, Node: testNode, DaemonSet: testDS,
	}
}

func daemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: testDS, Namespace: testNS}}
}

func statusConfigMap() *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: checkpoint.StatusConfigMap, Namespace: testNS}}
}

// parentPod is a self-hosted API server pod as a DaemonSet would make it.
func parentPod(name string, ready bool) *corev1.Pod {
	p := checkpointtest.ParentPod(name)
	p.Status = readyStatus(name, ready, "")
	return p
}

// runningLocal is parentPod-shaped p as the runtime runs it: a ready sandbox
// with its container up for an hour.
func runningLocal(p *corev1.Pod) localPod {
	return localPod{name: p.Name, uid: string(p.UID), ready: true,
		containers: map[string]localCtr{"kube-apiserver": {running: true, age: time.Hour}}}
}

// readyStatus is what the kubelet reports for parentPod's container as
// started in the given boot.
func readyStatus(pod string, ready bool, boot string) corev1.PodStatus {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.PodStatus{
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "kube-apiserver", Ready: ready,
			ContainerID: "containerd://" + containerID(pod, "kube-apiserver", boot)}},
	}
}

func extraSecret() *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "apiserver-extra", Namespace: testNS},
		Data: map[string][]byte{"key.pem": []byte("secret-key")}}
}

func testDisk(t *testing.T) Disk {
	root := t.TempDir()
	d := Disk{
		ManifestDir: filepath.Join(root, "manifests"),
		InactiveDir: filepath.Join(root, "inactive-manifests"),
		SecretDir:   filepath.Join(root, "checkpoint-secrets"),
	}
	if err := os.MkdirAll(d.ManifestDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newReconciler(t *testing.T, cri *criServer, api *apiServer, d Disk, clk clock.PassiveClock, log *slog.Logger) *Reconciler {
	t.Helper()
	if log == nil {
		log = quietLog()
	}
	return &Reconciler{
		Runtime: cri.cri, API: api.clientAPI(), Store: d, Metrics: NewMetrics(), Log: log, Clock: clk,
		Namespace: testNS, Node: testNode, PodName: testSelf, Self: testSelf, DaemonSet: testDS,
		SecretDir: d.SecretDir, Grace: testGrace, MinStable: 10 * time.Second,
		RefreshEvery: time.Minute, HeartbeatEvery: time.Minute, TokenLifetime: DefaultTokenLifetime,
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// testNodeFixture is one node's checkpointer against the fakes, with a Ready parent in the API.
type testNodeFixture struct {
	cri    *criServer
	disk   Disk
	clk    *testingclock.FakeClock
	api    *apiServer
	r      *Reconciler
	parent *corev1.Pod
}

func newTestNode(t *testing.T, log *slog.Logger) *testNodeFixture {
	t.Helper()
	n := &testNodeFixture{cri: startCRI(t), disk: testDisk(t), clk: testingclock.NewFakeClock(testNow), parent: parentPod(parentName, true)}
	n.api = newAPI(daemonSet(), statusConfigMap(), extraSecret(), n.parent)
	n.r = newReconciler(t, n.cri, n.api, n.disk, n.clk, log)
	return n
}

// step advances the clock by d and reconciles once.
func (n *testNodeFixture) step(t *testing.T, d time.Duration) Result {
	t.Helper()
	n.clk.Step(d)
	res, err := n.r.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkpointerPod is the checkpointer's own DaemonSet pod, not Ready yet (it
// only becomes Ready once it acts), with the token Secret it mounts.
func checkpointerPod() (*corev1.Pod, *corev1.Secret) {
	self := parentPod(testSelf, false)
	self.Spec.Volumes[1] = corev1.Volume{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "pod-checkpointer-token"}}}
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pod-checkpointer-token", Namespace: testNS},
		Data: map[string][]byte{"token": []byte("long-lived"), "ca.crt": []byte("ca"), "namespace": []byte(testNS)}}
	return self, token
}
