package checkpoint_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointtest"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// TestControlPlaneManifestsCheckpoint sanitizes every pod template of the
// rendered control plane that asks for a checkpoint: each must become a
// static pod that NodeRestriction admits.
func TestControlPlaneManifestsCheckpoint(t *testing.T) {
	v := render.Values{
		Namespace: "kube-system", KubernetesVersion: "v1.37.2", Images: images.Upstream("v1.37.2", ""),
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16", ClusterDomain: "cluster.local", DNSServiceIP: "10.96.0.10",
		EtcdServers: "https://127.0.0.1:2379", APIServerURL: "https://kind-external-load-balancer:6443",
		APIServerHost: "kind-external-load-balancer", APIServerPort: "6443", ControlPlaneReplicas: 2,
		APIServerSecret: map[string]string{"ca.crt": "Y2E="}, ControllerManagerSecret: map[string]string{"ca.crt": "Y2E="},
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()
	checked := 0
	for _, name := range []string{"kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml", "pod-checkpointer.yaml"} {
		out, err := render.RenderTemplate(name, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(out), "\n---\n") {
			obj, _, err := decoder.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var tmpl *corev1.PodTemplateSpec
			switch o := obj.(type) {
			case *appsv1.DaemonSet:
				tmpl = &o.Spec.Template
			case *appsv1.Deployment:
				tmpl = &o.Spec.Template
			default:
				continue
			}
			pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
			pod.Name, pod.Namespace = "pod-abcde", "kube-system"
			if !checkpoint.WantsCheckpoint(pod) {
				continue
			}
			cp, _, err := checkpoint.Sanitize(pod, "/etc/kubernetes/checkpoint-secrets")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if bad := checkpointtest.Inadmissible(cp); len(bad) > 0 {
				t.Errorf("%s: checkpoint has %v", name, bad)
			}
			checked++
		}
	}
	if checked < 2 {
		t.Fatalf("only %d pod templates ask for a checkpoint; want at least the API server and the checkpointer", checked)
	}
}
