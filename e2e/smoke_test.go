package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/e2e-framework/klient/decoder"
	"sigs.k8s.io/e2e-framework/klient/k8s"
	"sigs.k8s.io/e2e-framework/klient/k8s/resources"
	"sigs.k8s.io/e2e-framework/klient/wait"
	"sigs.k8s.io/e2e-framework/klient/wait/conditions"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
)

const (
	nodeCount = 4
	podCIDR   = "10.244.0.0/16" // networking.podSubnet in kind-ha.yaml
	smokeNS   = "smoke"
	// The control-plane taint; client pods tolerate it so they can run on a
	// control-plane node while the server runs on the worker.
	controlPlaneTaint = "node-role.kubernetes.io/control-plane"
)

// applyFlannel applies the flannel manifest bootstrap applies, unless it is
// there already, so TestSmoke also runs alone on a cluster never pivoted.
func applyFlannel(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	manifest, err := render.RenderTemplate("kube-flannel.yaml", render.Values{
		Images:  images.Upstream(images.KubernetesVersion, ""),
		PodCIDR: podCIDR,
	})
	if err != nil {
		t.Fatalf("rendering kube-flannel.yaml: %v", err)
	}
	if err := decoder.DecodeEach(ctx, bytes.NewReader(manifest), decoder.CreateIgnoreAlreadyExists(cfg.Client().Resources())); err != nil {
		t.Fatalf("applying kube-flannel.yaml: %v", err)
	}
	return ctx
}

func createSmokeNamespace(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: smokeNS}}
	if err := decoder.CreateIgnoreAlreadyExists(cfg.Client().Resources())(ctx, ns); err != nil {
		t.Fatalf("creating namespace %s: %v", smokeNS, err)
	}
	return ctx
}

func deleteSmokeNamespace(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: smokeNS}}
	if err := cfg.Client().Resources().Delete(ctx, ns); err != nil {
		t.Logf("deleting namespace %s: %v", smokeNS, err)
	}
	return ctx
}

func allNodesReady(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	var nodes corev1.NodeList
	err := wait.For(conditions.New(cfg.Client().Resources()).ResourceListMatchN(&nodes, nodeCount, func(o k8s.Object) bool {
		return nodeReady(o.(*corev1.Node))
	}), wait.WithTimeout(4*time.Minute), wait.WithInterval(2*time.Second))
	if err != nil {
		t.Fatalf("waiting 4m for %d Ready nodes: %v\n%s", nodeCount, err, describeNodes(ctx, cfg))
	}
	return ctx
}

// podReachesPodOnAnotherNode curls a server pod on the worker from a client
// pod on a control-plane node.
func podReachesPodOnAnotherNode(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	r := cfg.Client().Resources()
	server := startPod(ctx, t, r, serverPod())
	client := startPod(ctx, t, r, clientPod())
	if server.Spec.NodeName == client.Spec.NodeName {
		t.Fatalf("server and client both run on %s; the test needs two nodes", server.Spec.NodeName)
	}
	url := fmt.Sprintf("http://%s:8080/hostname", server.Status.PodIP)
	expectOutput(ctx, t, r, client, server.Name, "curl", "-sS", "--max-time", "5", url)
	return ctx
}

func coreDNSResolves(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	r := cfg.Client().Resources()
	err := wait.For(conditions.New(r).DeploymentAvailable("coredns", "kube-system"),
		wait.WithTimeout(2*time.Minute), wait.WithInterval(2*time.Second))
	if err != nil {
		t.Fatalf("waiting 2m for deployment kube-system/coredns to be Available: %v", err)
	}
	var svc corev1.Service
	if err := r.Get(ctx, "kubernetes", "default", &svc); err != nil {
		t.Fatalf("getting service default/kubernetes: %v", err)
	}
	expectOutput(ctx, t, r, getPod(ctx, t, r, "client"), svc.Spec.ClusterIP,
		"nslookup", "-timeout=5", "kubernetes.default.svc.cluster.local")
	return ctx
}

// serviceRoutesAcrossNodes puts a ClusterIP Service in front of the server pod
// and curls it from the client pod on another node.
func serviceRoutesAcrossNodes(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	r := cfg.Client().Resources()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: smokeNS},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "server"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if err := decoder.CreateIgnoreAlreadyExists(r)(ctx, svc); err != nil {
		t.Fatalf("creating service: %v", err)
	}
	if err := r.Get(ctx, svc.Name, smokeNS, svc); err != nil {
		t.Fatalf("getting service: %v", err)
	}
	url := fmt.Sprintf("http://%s/hostname", svc.Spec.ClusterIP)
	expectOutput(ctx, t, r, getPod(ctx, t, r, "client"), "server", "curl", "-sS", "--max-time", "5", url)
	return ctx
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describeNodes(ctx context.Context, cfg *envconf.Config) string {
	var nodes corev1.NodeList
	if err := cfg.Client().Resources().List(ctx, &nodes); err != nil {
		return "listing nodes: " + err.Error()
	}
	var b strings.Builder
	for _, n := range nodes.Items {
		fmt.Fprintf(&b, "  %s Ready=%v\n", n.Name, nodeReady(&n))
	}
	return b.String()
}

// serverPod runs agnhost netexec on the worker (no control-plane label).
func serverPod() *corev1.Pod {
	p := agnhostPod("server", "netexec", "--http-port=8080")
	p.Labels = map[string]string{"app": "server"}
	p.Spec.Affinity = nodeAffinity(corev1.NodeSelectorOpDoesNotExist)
	return p
}

// clientPod runs on a control-plane node, so its traffic crosses nodes.
func clientPod() *corev1.Pod {
	p := agnhostPod("client", "pause")
	p.Spec.Affinity = nodeAffinity(corev1.NodeSelectorOpExists)
	p.Spec.Tolerations = []corev1.Toleration{{Key: controlPlaneTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	return p
}

func agnhostPod(name string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: smokeNS},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name:            "agnhost",
				Image:           agnhostImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
			}},
		},
	}
}

func nodeAffinity(op corev1.NodeSelectorOperator) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: controlPlaneTaint, Operator: op}},
			}},
		},
	}}
}

// startPod creates a pod (or reuses one left by an earlier assessment) and waits until it runs.
func startPod(ctx context.Context, t *testing.T, r *resources.Resources, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := decoder.CreateIgnoreAlreadyExists(r)(ctx, p); err != nil {
		t.Fatalf("creating pod %s: %v", p.Name, err)
	}
	err := wait.For(conditions.New(r).PodReady(p), wait.WithTimeout(2*time.Minute), wait.WithInterval(time.Second))
	if err != nil {
		t.Fatalf("waiting 2m for pod %s/%s to be Ready: %v (phase %s)", smokeNS, p.Name, err, p.Status.Phase)
	}
	return getPod(ctx, t, r, p.Name)
}

func getPod(ctx context.Context, t *testing.T, r *resources.Resources, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := r.Get(ctx, name, smokeNS, &p); err != nil {
		t.Fatalf("getting pod %s/%s: %v", smokeNS, name, err)
	}
	return &p
}

// expectOutput runs cmd in the pod until its output contains want, for up to a minute:
// a fresh pod network or Service can take a few seconds to be programmed.
func expectOutput(ctx context.Context, t *testing.T, r *resources.Resources, p *corev1.Pod, want string, cmd ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var err error
	printed := func(context.Context) (bool, error) {
		stdout.Reset()
		stderr.Reset()
		err = r.ExecInPod(ctx, p.Namespace, p.Name, p.Spec.Containers[0].Name, cmd, &stdout, &stderr)
		return err == nil && strings.Contains(stdout.String(), want), nil
	}
	if wait.For(printed, polling(ctx, 2*time.Second, time.Minute)...) == nil {
		return
	}
	t.Fatalf("in pod %s on %s, %q did not print %q within 1m: err=%v\nstdout: %s\nstderr: %s",
		p.Name, p.Spec.NodeName, strings.Join(cmd, " "), want, err, stdout.String(), stderr.String())
}
