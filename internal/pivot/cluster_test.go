package pivot

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
)

// withDNSDomain sets networking.dnsDomain in kubeadm's ClusterConfiguration.
func withDNSDomain(domain string) func([]runtime.Object) []runtime.Object {
	return func(objs []runtime.Object) []runtime.Object {
		for _, o := range objs {
			if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == "kubeadm-config" {
				cm.Data["ClusterConfiguration"] += "  dnsDomain: " + domain + "\n"
			}
		}
		return objs
	}
}

// The cluster DNS domain is kubeadm's, not a default: CoreDNS, the
// add-ons' values and the API server's serving certificate all follow it.
func TestTheClusterDomainComesFromKubeadm(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func([]runtime.Object) []runtime.Object
		want   string
	}{
		{"dnsDomain corp.internal", withDNSDomain("corp.internal"), "corp.internal"},
		{"no dnsDomain", nil, "cluster.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client := kubeadmCluster(t, tc.mutate)
			cl, err := Discover(ctx, client)
			if err != nil {
				t.Fatal(err)
			}
			c := NewContext(client, nil, progress.NewStatus(io.Discard, false), Options{CheckpointerImage: "checkpointer:test"}, cl)
			if v := values(c); v.ClusterDomain != tc.want || v.DNSServiceIP != "10.96.0.10" || v.ControlPlaneReplicas != 3 {
				t.Errorf("values: domain %q, DNS %s, replicas %d; want %q, 10.96.0.10, 3", v.ClusterDomain, v.DNSServiceIP, v.ControlPlaneReplicas, tc.want)
			}
			corefile, err := render.RenderTemplate("coredns.yaml", values(c))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(corefile), "kubernetes "+tc.want+" in-addr.arpa") {
				t.Errorf("CoreDNS does not serve %s:\n%s", tc.want, corefile)
			}
			if tc.want != cluster.DefaultDomain && strings.Contains(string(corefile), cluster.DefaultDomain) {
				t.Errorf("CoreDNS still names %s", cluster.DefaultDomain)
			}
			names, _, err := servingNames(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(names, "kubernetes.default.svc."+tc.want) || !slices.Contains(names, "cp3") {
				t.Errorf("the serving certificate would name %v; want kubernetes.default.svc.%s and every control-plane node", names, tc.want)
			}
		})
	}
}

// With a node outside the control plane, CoreDNS must run there: a restart
// of every control-plane node then leaves DNS answering. Without one, it
// may only prefer it.
func TestDNSStaysOffTheControlPlaneWhenThereAreOtherNodes(t *testing.T) {
	onlyControlPlane := func(objs []runtime.Object) []runtime.Object {
		return slices.DeleteFunc(objs, func(o runtime.Object) bool {
			n, ok := o.(*corev1.Node)
			return ok && n.Name == "worker"
		})
	}
	for _, tc := range []struct {
		name     string
		mutate   func([]runtime.Object) []runtime.Object
		required bool
	}{
		{"a worker", nil, true},
		{"control-plane nodes only", onlyControlPlane, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := kubeadmCluster(t, tc.mutate)
			cl, err := Discover(context.Background(), client)
			if err != nil {
				t.Fatal(err)
			}
			c := NewContext(client, nil, progress.NewStatus(io.Discard, false), Options{CheckpointerImage: "checkpointer:test"}, cl)
			objs, err := templateObjects(c, "coredns.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var affinity *corev1.NodeAffinity
			for _, o := range objs {
				if o.GetKind() == "Deployment" {
					var d appsv1.Deployment
					if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
						t.Fatal(err)
					}
					affinity = d.Spec.Template.Spec.Affinity.NodeAffinity
					if len(d.Spec.Template.Spec.TopologySpreadConstraints) != 1 || d.Spec.Template.Spec.TopologySpreadConstraints[0].WhenUnsatisfiable != corev1.DoNotSchedule {
						t.Error("CoreDNS is not spread over nodes")
					}
				}
			}
			if got := affinity != nil && affinity.RequiredDuringSchedulingIgnoredDuringExecution != nil; got != tc.required {
				t.Errorf("required off the control plane = %v, want %v", got, tc.required)
			}
		})
	}
}
