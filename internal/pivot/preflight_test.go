package pivot

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

const kubeadmConfig = `apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
controlPlaneEndpoint: selfhost-external-load-balancer:6443
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/16
`

// kubeadmCluster is a 3+1 kind cluster before the pivot.
func kubeadmCluster(t *testing.T, mutate func([]runtime.Object) []runtime.Object) *fake.Clientset {
	objs := []runtime.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: kube.Namespace}, Data: map[string]string{"ClusterConfiguration": kubeadmConfig}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: kube.Namespace}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker"}},
	}
	for _, n := range []string{"cp1", "cp2", "cp3"} {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{kube.ControlPlaneLabel: ""}}})
		for _, comp := range append([]string{"etcd"}, Components...) {
			objs = append(objs, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: comp + "-" + n, Namespace: kube.Namespace,
					Labels:      map[string]string{"component": comp, "tier": "control-plane"},
					Annotations: map[string]string{"kubernetes.io/config.mirror": "x", "kubernetes.io/config.source": "file"}},
				Spec: corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: comp}}},
			})
		}
	}
	if mutate != nil {
		objs = mutate(objs)
	}
	client := fake.NewClientset(objs...)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.37.2"}
	allow(client, func(*authorizationv1.ResourceAttributes) bool { return true })
	return client
}

func allow(client *fake.Clientset, decide func(*authorizationv1.ResourceAttributes) bool) {
	client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r.Status.Allowed = decide(r.Spec.ResourceAttributes)
		return true, r, nil
	})
}

func discoverAndCheck(t *testing.T, client *fake.Clientset) (*Cluster, error) {
	t.Helper()
	c, err := Discover(context.Background(), client)
	if err != nil {
		return nil, err
	}
	return c, Preflight(context.Background(), client, c)
}

func TestPreflightAcceptsKubeadmCluster(t *testing.T) {
	c, err := discoverAndCheck(t, kubeadmCluster(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ControlPlane) != 3 || c.Endpoint.Host != "selfhost-external-load-balancer:6443" || c.PodCIDR != "10.244.0.0/16" || c.DNSServiceIP != "10.96.0.10" {
		t.Errorf("discovered %+v", c)
	}
	if len(c.Mirror["kube-apiserver"]) != 3 || c.Mirror["etcd"]["cp1"] == nil {
		t.Errorf("mirror pods %v", c.Mirror)
	}
	// A port-sharing pass per node, the API server's 1 + 3 steps, the other
	// two components' 2 together, the add-ons, the recovery record.
	if got := len(Actions(c, Options{Certs: CertsHostPath})); got != 2+3+(1+3)+2+1+1 {
		t.Errorf("%d actions with --certs hostpath", got)
	}
	if got := len(Actions(c, Options{Certs: CertsSecret})); got != 2+3+(1+3)+2+1+1+1 {
		t.Errorf("%d actions with --certs secret", got)
	}
}

func TestPreflightRefusals(t *testing.T) {
	without := func(name string) func([]runtime.Object) []runtime.Object {
		return func(objs []runtime.Object) []runtime.Object {
			var out []runtime.Object
			for _, o := range objs {
				if o.(metav1.Object).GetName() != name {
					out = append(out, o)
				}
			}
			return out
		}
	}
	cases := []struct {
		name   string
		client func() *fake.Clientset
		want   string
	}{
		{"not kubeadm", func() *fake.Clientset { return kubeadmCluster(t, without("kubeadm-config")) },
			"not made by kubeadm: ConfigMap kube-system/kubeadm-config does not exist"},
		{"missing static pod", func() *fake.Clientset { return kubeadmCluster(t, without("kube-scheduler-cp2")) },
			"control-plane node cp2 runs no static kube-scheduler and no self-hosted one exists"},
		{"old version", func() *fake.Clientset {
			c := kubeadmCluster(t, nil)
			c.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.29.4"}
			return c
		}, "Kubernetes v1.29.4 is not supported"},
		{"no permission", func() *fake.Clientset {
			c := kubeadmCluster(t, nil)
			allow(c, func(a *authorizationv1.ResourceAttributes) bool { return a.Resource != "daemonsets" })
			return c
		}, "you may not create daemonsets.apps in kube-system, patch daemonsets.apps in kube-system; bootstrap needs a cluster administrator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client()
			_, err := discoverAndCheck(t, client)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			for _, a := range client.Actions() {
				if v := a.GetVerb(); v != "get" && v != "list" && !(v == "create" && a.GetResource().Resource == "selfsubjectaccessreviews") {
					t.Errorf("a refused preflight changed the cluster: %s %s", v, a.GetResource().Resource)
				}
			}
		})
	}
}

// Preflight refuses on the first failing check and asks nothing more: an
// unsupported server is not sent an access review.
func TestPreflightStopsAtTheFirstFailure(t *testing.T) {
	client := kubeadmCluster(t, nil)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.29.4"}
	allow(client, func(*authorizationv1.ResourceAttributes) bool { return false })
	_, err := discoverAndCheck(t, client)
	if err == nil || !strings.HasPrefix(err.Error(), "Kubernetes v1.29.4 is not supported") {
		t.Fatalf("want the version refused, got %v", err)
	}
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "selfsubjectaccessreviews" {
			t.Fatal("preflight went on to check permissions after the version failed")
		}
	}
}

func TestPreflightChecksSayWhatTheyFound(t *testing.T) {
	client := kubeadmCluster(t, nil)
	c, err := Discover(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	results := check.All(context.Background(), preflightChecks(client, c)...)
	want := map[string]string{
		"version":             "Kubernetes v1.37.2",
		"permissions":         fmt.Sprintf("allowed all %d actions bootstrap takes", len(permissions)),
		"control-plane shape": "kube-apiserver, kube-controller-manager, kube-scheduler static or self-hosted on all 3 control-plane nodes",
	}
	if len(results) != len(want) {
		t.Errorf("%d results, want %d", len(results), len(want))
	}
	for name, detail := range want {
		if res, ok := results.Find(name); !ok || !res.Passed || res.Detail != detail {
			t.Errorf("%s: %+v, want passed with %q", name, res, detail)
		}
	}
}
