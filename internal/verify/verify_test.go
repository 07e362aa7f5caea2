package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

var controlPlane = []string{"cp1", "cp2", "cp3"}

type fakeDNS struct{ err error }

func (f fakeDNS) Resolve(context.Context, string) (string, error) { return "10.96.0.1", f.err }

// world is a cluster as objects; tests break one thing at a time.
type world struct {
	objs []runtime.Object
	dns  error
	now  time.Time // the API server's clock; zero: this machine's
}

func node(name string, cp, isReady bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if cp {
		n.Labels[kube.ControlPlaneLabel] = ""
	}
	status := corev1.ConditionFalse
	if isReady {
		status = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	return n
}

func pod(name, node, component string, owner *metav1.OwnerReference, annotations map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kube.Namespace, Labels: map[string]string{"component": component}, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func ds(ns, name string, desired, isReady int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Status:     appsv1.DaemonSetStatus{DesiredNumberScheduled: desired, NumberReady: isReady},
	}
}

func deploy(name string, replicas, isReady int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kube.Namespace},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
		Status:     appsv1.DeploymentStatus{ReadyReplicas: isReady},
	}
}

func status(t *testing.T, phase checkpoint.Phase) *corev1.ConfigMap {
	data := map[string]string{}
	for _, n := range controlPlane {
		st := checkpoint.NodeStatus{Node: n, Updated: time.Now(), Checkpoints: []checkpoint.CheckpointStatus{
			{Parent: "kube-apiserver-" + n, State: checkpoint.State{Phase: phase}},
		}}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		data[n] = string(b)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: checkpoint.StatusConfigMap, Namespace: kube.Namespace}, Data: data}
}

// started is a "Starting" event about node from component.
func started(node, component string, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: node + "." + component, Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node},
		Reason:         "Starting",
		Source:         corev1.EventSource{Component: component, Host: node},
		LastTimestamp:  metav1.NewTime(at),
	}
}

var mirror = map[string]string{"kubernetes.io/config.mirror": "x", "kubernetes.io/config.source": "file"}

// selfHosted is a healthy pivoted 3+1 cluster.
func selfHosted(t *testing.T) *world {
	w := &world{}
	add := func(o ...runtime.Object) { w.objs = append(w.objs, o...) }
	add(node("w1", false, true))
	apiOwner := &metav1.OwnerReference{Kind: "DaemonSet", Name: "kube-apiserver"}
	cpOwner := &metav1.OwnerReference{Kind: "DaemonSet", Name: CheckpointerDaemonSet}
	for _, n := range controlPlane {
		add(node(n, true, true),
			pod("kube-apiserver-"+n, n, "kube-apiserver", apiOwner, nil),
			pod("pod-checkpointer-"+n, n, "pod-checkpointer", cpOwner, nil),
			pod("etcd-"+n, n, "etcd", nil, mirror),
			started(n, "kubelet", time.Now().Add(-time.Hour)),
			started(n, "kube-proxy", time.Now().Add(time.Hour))) // not the kubelet: ignored
	}
	add(ds(kube.Namespace, "kube-apiserver", 3, 3), ds(kube.Namespace, CheckpointerDaemonSet, 3, 3), ds(FlannelNamespace, FlannelDaemonSet, 4, 4),
		deploy("kube-controller-manager", 3, 3), deploy("kube-scheduler", 3, 3),
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager", Namespace: kube.Namespace}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler", Namespace: kube.Namespace}},
		status(t, checkpoint.PhaseInactive), credentials(t, 300*24*time.Hour))
	rec, err := record.Build(context.Background(), fake.NewClientset(w.objs...))
	if err != nil {
		t.Fatal(err)
	}
	add(rec)
	return w
}

// credentials is Secret kube-apiserver with a CA and a client certificate
// that expires after left.
func credentials(t *testing.T, left time.Duration) *corev1.Secret {
	t.Helper()
	ca, err := pki.NewCA(pki.ECDSAP256, "kubernetes", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.ECDSAP256, pki.CertConfig{CommonName: "kube-apiserver-etcd-client"}, time.Now().Add(left-pki.LeafValidity))
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: kube.Namespace}, Data: map[string][]byte{
		"ca.crt": pki.EncodeCert(ca.Cert), "apiserver-etcd-client.crt": pki.EncodeCert(leaf.Cert), "apiserver-etcd-client.key": []byte("not read"),
	}}
}

// kubeadm is the same cluster before the pivot.
func kubeadm() *world {
	w := &world{}
	w.objs = append(w.objs, node("w1", false, true))
	for _, n := range controlPlane {
		w.objs = append(w.objs, node(n, true, true))
		for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			w.objs = append(w.objs, pod(c+"-"+n, n, c, nil, mirror))
		}
	}
	return w
}

func (w *world) run(t *testing.T) *Report {
	t.Helper()
	v := &Verifier{Client: fake.NewClientset(w.objs...), DNS: fakeDNS{w.dns}, ClusterDomain: "cluster.local"}
	if !w.now.IsZero() {
		v.Clock = func(context.Context) time.Time { return w.now }
	}
	r, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (w *world) replace(match func(runtime.Object) bool, with ...runtime.Object) *world {
	var out []runtime.Object
	for _, o := range w.objs {
		if !match(o) {
			out = append(out, o)
		}
	}
	w.objs = append(out, with...)
	return w
}

func named(name string) func(runtime.Object) bool {
	return func(o runtime.Object) bool { return o.(metav1.Object).GetName() == name }
}

func result(r *Report, name string) check.Result {
	if res, ok := r.Results.Find(name); ok {
		return res
	}
	return check.Result{Check: name, Detail: "missing"}
}

func TestSelfHostedClusterPasses(t *testing.T) {
	r := selfHosted(t).run(t)
	for _, res := range r.Results {
		if !res.Passed {
			t.Errorf("%s failed: %s", res.Check, res.Detail)
		}
	}
	if !r.Passed || !r.SelfHosted || len(r.Results) != 12 {
		t.Errorf("passed=%v selfHosted=%v checks=%d: %s", r.Passed, r.SelfHosted, len(r.Results), r.Summary)
	}
}

func TestKubeadmClusterIsPlainlyNotSelfHosted(t *testing.T) {
	r := kubeadm().run(t)
	if r.Passed || r.SelfHosted {
		t.Fatal("a static-pod control plane passed verify")
	}
	want := "not self-hosted: kube-apiserver, kube-controller-manager, kube-scheduler still run as static pods"
	if !strings.Contains(r.Summary, want) {
		t.Errorf("summary %q does not say %q", r.Summary, want)
	}
	if !result(r, "nodes").Passed {
		t.Error("the nodes are Ready, yet the nodes check failed")
	}
}

// Once the API server DaemonSet exists, static pods left over are a failed
// check like any other, not a cluster that was never pivoted.
func TestPartlyPivotedClusterListsWhatFails(t *testing.T) {
	w := kubeadm()
	w.objs = append(w.objs, ds(kube.Namespace, "kube-apiserver", 3, 3))
	r := w.run(t)
	if r.Passed || r.SelfHosted {
		t.Fatal("a partly pivoted control plane passed verify")
	}
	if want := fmt.Sprintf("%d of %d checks failed.", r.Results.Failed(), len(r.Results)); r.Summary != want {
		t.Errorf("summary %q, want %q", r.Summary, want)
	}
	if got := result(r, "kube-apiserver").Detail; !strings.HasPrefix(got, "want one ready pod per control-plane node") {
		t.Errorf("kube-apiserver: %q, want the missing pods named", got)
	}
}

// Each broken thing fails its own check, with a reason, and nothing else.
func TestEachFaultFailsItsCheck(t *testing.T) {
	cases := []struct {
		name, check, detail string
		breakIt             func(*world)
	}{
		{"static manifest left", "kube-apiserver", "static manifest still present on cp2", func(w *world) {
			w.objs = append(w.objs, pod("kube-apiserver-static-cp2", "cp2", "kube-apiserver", nil, mirror))
		}},
		{"apiserver not ready", "kube-apiserver", "DaemonSet 2 of 3 ready", func(w *world) {
			w.replace(named("kube-apiserver"), ds(kube.Namespace, "kube-apiserver", 3, 2))
		}},
		{"two apiservers on a node", "kube-apiserver", "cp3 has 0", func(w *world) {
			w.replace(named("kube-apiserver-cp3"), pod("kube-apiserver-cp3", "cp1", "kube-apiserver", &metav1.OwnerReference{Kind: "DaemonSet", Name: "kube-apiserver"}, nil))
		}},
		{"scheduler short", "kube-scheduler", "Deployment 2 of 3 ready", func(w *world) {
			w.replace(named("kube-scheduler"), deploy("kube-scheduler", 3, 2), &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler", Namespace: kube.Namespace}})
		}},
		{"no PDB", "kube-controller-manager PDB", "no PodDisruptionBudget", func(w *world) {
			w.replace(func(o runtime.Object) bool {
				_, isPDB := o.(*policyv1.PodDisruptionBudget)
				return isPDB && named("kube-controller-manager")(o)
			})
		}},
		{"checkpointer down on a node", "pod-checkpointer", "not Ready on cp2", func(w *world) {
			w.replace(named("pod-checkpointer-cp2"))
		}},
		{"checkpoint active", "apiserver checkpoints", `no inactive checkpoint of "kube-apiserver-cp1"`, func(w *world) {
			w.replace(named(checkpoint.StatusConfigMap), status(t, checkpoint.PhaseActive))
		}},
		{"no report since a restart", "apiserver checkpoints", "cp2: no report since its kubelet started", func(w *world) {
			w.replace(named("cp2.kubelet"), started("cp2", "kubelet", time.Now().Add(time.Minute)))
		}},
		{"no checkpointer status", "apiserver checkpoints", "not installed", func(w *world) {
			w.replace(named(checkpoint.StatusConfigMap))
		}},
		{"node not ready", "nodes", "not Ready: w1", func(w *world) {
			w.replace(named("w1"), node("w1", false, false))
		}},
		{"flannel short", "flannel", "3 of 4 nodes", func(w *world) {
			w.replace(named(FlannelDaemonSet), ds(FlannelNamespace, FlannelDaemonSet, 4, 3))
		}},
		{"dns", "dns", "did not resolve from a probe pod: NXDOMAIN", func(w *world) {
			w.dns = errors.New("NXDOMAIN")
		}},
		{"API server changed since it was recorded", "recovery record", "run kubectl selfhost bootstrap to record them", func(w *world) {
			changed := ds(kube.Namespace, "kube-apiserver", 3, 3)
			changed.Spec.Template.Spec.Containers = []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.3"}}
			w.replace(named("kube-apiserver"), changed)
		}},
		{"no recovery record", "recovery record", "selfhost-recovery does not hold", func(w *world) {
			w.replace(named(record.Name))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := selfHosted(t)
			tc.breakIt(w)
			r := w.run(t)
			if r.Passed {
				t.Fatal("verify passed a broken cluster")
			}
			got := result(r, tc.check)
			if got.Passed || !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("%s: passed=%v detail %q, want failure containing %q", tc.check, got.Passed, got.Detail, tc.detail)
			}
			for _, res := range r.Results {
				if !res.Passed && res.Check != tc.check && !(tc.check == "kube-apiserver" && res.Check == "apiserver checkpoints") {
					t.Errorf("unrelated check %s failed too: %s", res.Check, res.Detail)
				}
			}
			if want := fmt.Sprintf("of %d checks failed", len(r.Results)); !strings.Contains(r.Summary, want) {
				t.Errorf("summary %q", r.Summary)
			}
		})
	}
}

func TestParseNslookup(t *testing.T) {
	// busybox 1.36's output.
	out := "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n\nName:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n\n"
	got, err := parseNslookup(out, "kubernetes.default.svc.cluster.local")
	if err != nil || got != "10.96.0.1" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := parseNslookup("Server: 10.96.0.10\nAddress: 10.96.0.10:53\n** server can't find x: NXDOMAIN\n", "x"); err == nil {
		t.Error("an NXDOMAIN answer parsed as an address")
	}
}

func TestFailingNamesWhatFailsAndLeavesOutDNS(t *testing.T) {
	ctx := context.Background()
	w := selfHosted(t)
	w.dns = errors.New("no probe pod") // DNS is not Failing's to check
	v := &Verifier{Client: fake.NewClientset(w.objs...), DNS: fakeDNS{w.dns}, ClusterDomain: "cluster.local"}
	if !w.now.IsZero() {
		v.Clock = func(context.Context) time.Time { return w.now }
	}
	if why, err := v.Failing(ctx); err != nil || why != "" {
		t.Errorf("a healthy cluster: %q, %v; want nothing failing", why, err)
	}
	w.replace(named("kube-scheduler"), deploy("kube-scheduler", 3, 2), &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler", Namespace: kube.Namespace}})
	v.Client = fake.NewClientset(w.objs...)
	why, err := v.Failing(ctx)
	if err != nil || !strings.HasPrefix(why, "kube-scheduler: Deployment 2 of 3 ready") || strings.Contains(why, ";") {
		t.Errorf("a scheduler short: %q, %v; want only that named", why, err)
	}
	// The whole report names DNS too.
	if got := w.run(t).Failing(); !strings.HasPrefix(got, why+"; dns: ") {
		t.Errorf("report: %q; want the scheduler, then DNS", got)
	}
}

// namesDNS resolves only the names it knows.
type namesDNS map[string]string

func (d namesDNS) Resolve(_ context.Context, name string) (string, error) {
	if addr, ok := d[name]; ok {
		return addr, nil
	}
	return "", fmt.Errorf("no such host %s", name)
}

// Without --cluster-domain, the DNS check asks for the cluster's own domain:
// kubeadm's dnsDomain, or cluster.local where nothing names another.
func TestDNSCheckUsesTheClustersDomain(t *testing.T) {
	dns := namesDNS{"kubernetes.default.svc.corp.internal": "10.96.0.1", "kubernetes.default.svc.cluster.local": "10.96.0.1"}
	kubeadm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: kube.Namespace},
		Data: map[string]string{"ClusterConfiguration": "networking:\n  dnsDomain: corp.internal\n"}}
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		flag string
		want string
	}{
		{"kubeadm's dnsDomain", []runtime.Object{kubeadm}, "", "kubernetes.default.svc.corp.internal resolves"},
		{"no kubeadm", nil, "", "kubernetes.default.svc.cluster.local resolves"},
		{"the flag wins", []runtime.Object{kubeadm}, "cluster.local", "kubernetes.default.svc.cluster.local resolves"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Client: fake.NewClientset(tc.objs...), DNS: dns, ClusterDomain: tc.flag}
			detail, err := v.checkDNS(context.Background())
			if err != nil || !strings.HasPrefix(detail, tc.want) {
				t.Errorf("got %q, %v; want %q", detail, err, tc.want)
			}
		})
	}
}

func TestACertificateNearExpiryFailsNamingItAndItsDate(t *testing.T) {
	expiring := credentials(t, 20*24*time.Hour)
	r := selfHosted(t).replace(named("kube-apiserver"), expiring).run(t)
	res := result(r, "certificates")
	date := time.Now().Add(20 * 24 * time.Hour).UTC().Format(time.DateOnly)
	if res.Passed || !strings.Contains(res.Detail, "apiserver-etcd-client.crt (kube-apiserver-etcd-client) expires on "+date) ||
		!strings.Contains(res.Detail, "Secret kube-system/kube-apiserver") {
		t.Fatalf("certificates: passed=%v %q", res.Passed, res.Detail)
	}
	if !result(selfHosted(t).run(t), "certificates").Passed {
		t.Error("certificates 300 days from expiry fail")
	}
}

// A report the API server stored long ago is stale, however fresh the
// node's own (skewed) clock made its "updated" look.
func TestAStaleReportFailsByTheServersClock(t *testing.T) {
	server := time.Now().Add(10 * time.Minute)
	stale := status(t, checkpoint.PhaseInactive)
	for _, n := range controlPlane {
		stale.ManagedFields = append(stale.ManagedFields, metav1.ManagedFieldsEntry{
			Manager: checkpoint.StatusManager(n), Operation: metav1.ManagedFieldsOperationUpdate, Time: ptr.To(metav1.NewTime(server.Add(-10 * time.Minute)))})
	}
	w := selfHosted(t).replace(named(checkpoint.StatusConfigMap), stale)
	w.now = server
	res := result(w.run(t), "apiserver checkpoints")
	if res.Passed || !strings.Contains(res.Detail, "cp1: no report for 10m0s by the API server's clock") {
		t.Fatalf("apiserver checkpoints: passed=%v %q", res.Passed, res.Detail)
	}
	w.now = server.Add(-9 * time.Minute)
	if res := result(w.run(t), "apiserver checkpoints"); !res.Passed {
		t.Fatalf("a report written a minute ago: %q", res.Detail)
	}
}

// reverted is the cluster after revert: static pods, no checkpointer.
func reverted() *world {
	w := kubeadm()
	w.objs = append(w.objs, ds(FlannelNamespace, FlannelDaemonSet, 4, 4))
	return w
}

func (w *world) runStatic(t *testing.T) *Report {
	t.Helper()
	v := &Verifier{Client: fake.NewClientset(w.objs...), DNS: fakeDNS{w.dns}, ClusterDomain: "cluster.local", Expect: ExpectStatic}
	r, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// --expect static passes a reverted cluster, says so plainly, and fails
// each thing a revert must leave behind, by name.
func TestExpectStatic(t *testing.T) {
	r := reverted().runStatic(t)
	if !r.Passed || r.SelfHosted || !strings.HasPrefix(r.Summary, "Static control plane, healthy") {
		t.Fatalf("a reverted cluster: passed=%v selfHosted=%v %q: %s", r.Passed, r.SelfHosted, r.Summary, r.Failing())
	}
	if r := selfHosted(t).runStatic(t); r.Passed {
		t.Error("a self-hosted cluster passed --expect static")
	}
	cases := []struct {
		name, check, detail string
		breakIt             func(*world)
	}{
		{"static pod missing", "static kube-scheduler", "no Ready static pod on cp2", func(w *world) { w.replace(named("kube-scheduler-cp2")) }},
		{"checkpointer left", "no self-hosted workloads", "DaemonSet pod-checkpointer", func(w *world) {
			w.objs = append(w.objs, ds(kube.Namespace, CheckpointerDaemonSet, 3, 3))
		}},
		{"Deployment left", "no self-hosted workloads", "Deployment kube-scheduler", func(w *world) { w.objs = append(w.objs, deploy("kube-scheduler", 3, 3)) }},
		{"checkpoint runs", "no checkpoints", "kube-system-kube-apiserver-x-cp1", func(w *world) {
			w.objs = append(w.objs, pod("kube-system-kube-apiserver-x-cp1", "cp1", "kube-apiserver", nil, map[string]string{checkpoint.CheckpointOfAnnotation: "kube-apiserver-x"}))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := reverted()
			tc.breakIt(w)
			got := result(w.runStatic(t), tc.check)
			if got.Passed || !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("%s: passed=%v detail %q, want failure containing %q", tc.check, got.Passed, got.Detail, tc.detail)
			}
		})
	}
}
