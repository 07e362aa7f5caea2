package pivot

import (
	"os"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

func loadMirror(t *testing.T) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile("testdata/kube-apiserver-mirror.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestSelfHostedAPIServerTemplate(t *testing.T) {
	mirror := loadMirror(t)
	tmpl, err := SelfHostedTemplate("kube-apiserver", mirror)
	if err != nil {
		t.Fatal(err)
	}
	s := tmpl.Spec
	c := s.Containers[0]
	if s.NodeName != "" || s.Priority != nil {
		t.Errorf("node-specific fields kept: nodeName=%q priority=%v", s.NodeName, s.Priority)
	}
	if !slices.Contains(c.Command, "--advertise-address=$(HOST_IP)") || slices.Contains(c.Command, "--advertise-address=172.18.0.4") {
		t.Errorf("advertise address not taken from the downward API: %v", c.Command)
	}
	if !slices.Contains(c.Command, PortSharingFlag) {
		t.Error("no --permit-port-sharing: the pod could not bind beside the static one")
	}
	if len(c.Ports) != 0 {
		t.Error("declared ports make the kubelet refuse the pod beside the static one")
	}
	if g := s.TerminationGracePeriodSeconds; g == nil || *g != portSharingGrace {
		t.Errorf("grace period %v, want %ds: a deleted pod would linger unlistening for kubeadm's 30 s", g, portSharingGrace)
	}
	env := c.Env[len(c.Env)-1]
	if env.Name != "HOST_IP" || env.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("HOST_IP env: %+v", env)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p.HTTPGet.Host != "127.0.0.1" {
			t.Errorf("%s probe aimed at %q; want 127.0.0.1, which the pod's checkpoint does not serve", name, p.HTTPGet.Host)
		}
		if p.HTTPGet.Port != intstr.FromInt32(6443) {
			t.Errorf("%s probe port %v, want 6443", name, p.HTTPGet.Port)
		}
	}
	// kubeadm's startup probe: 10 s delay, then 24 polls 10 s apart.
	if sp := c.StartupProbe; sp.InitialDelaySeconds != 0 || sp.PeriodSeconds != 2 || sp.FailureThreshold != 125 {
		t.Errorf("startup probe: delay %ds, every %ds, %d failures; want every 2 s from the start for the same 250 s",
			sp.InitialDelaySeconds, sp.PeriodSeconds, sp.FailureThreshold)
	}
	if lp := c.LivenessProbe; lp.PeriodSeconds != 10 || lp.FailureThreshold != 8 {
		t.Errorf("liveness probe changed: every %ds, %d failures", lp.PeriodSeconds, lp.FailureThreshold)
	}
	if tmpl.Annotations[checkpoint.CheckpointAnnotation] != "true" {
		t.Error("the API server is not marked for checkpointing")
	}
	if got := tmpl.Annotations[checkpoint.ArgsAnnotation]; got != "--bind-address=$(HOST_IP)" {
		t.Errorf("checkpoint args %q: the checkpoint would share the pod's addresses", got)
	}
	if tmpl.Labels["k8s-app"] != "kube-apiserver" || s.NodeSelector[kube.ControlPlaneLabel] != "" || !s.HostNetwork {
		t.Errorf("labels %v, nodeSelector %v, hostNetwork %v", tmpl.Labels, s.NodeSelector, s.HostNetwork)
	}
	if *s.AutomountServiceAccountToken {
		t.Error("a service-account token would be mounted; the checkpoint would have to drop it")
	}
	if len(s.Volumes) != 2 || s.Volumes[1].HostPath.Path != "/etc/kubernetes/pki" {
		t.Errorf("kubeadm's hostPath certificates not kept: %+v", s.Volumes)
	}
	// The mirror pod itself is untouched.
	if mirror.Spec.NodeName == "" || len(mirror.Spec.Containers[0].Ports) != 1 {
		t.Error("SelfHostedTemplate modified its input")
	}
}

// An API server that kubeadm bound to one address keeps it; its checkpoint
// then shares that address, and probes go to the pod IP as before.
func TestSelfHostedAPIServerBoundToOneAddress(t *testing.T) {
	mirror := loadMirror(t)
	mirror.Spec.Containers[0].Command = append(mirror.Spec.Containers[0].Command, "--bind-address=172.18.0.4")
	tmpl, err := SelfHostedTemplate("kube-apiserver", mirror)
	if err != nil {
		t.Fatal(err)
	}
	c := tmpl.Spec.Containers[0]
	if !slices.Contains(c.Command, "--bind-address=172.18.0.4") {
		t.Errorf("--bind-address changed: %v", c.Command)
	}
	if c.ReadinessProbe.HTTPGet.Host != "" || c.LivenessProbe.HTTPGet.Host != "" {
		t.Errorf("probes aimed at %q, where this server does not listen", c.ReadinessProbe.HTTPGet.Host)
	}
	if _, ok := tmpl.Annotations[checkpoint.ArgsAnnotation]; ok {
		t.Error("checkpoint args set for a server bound to one address")
	}
}

func TestPortSharingStatic(t *testing.T) {
	mirror := loadMirror(t)
	if SharesPort(mirror) {
		t.Fatal("kubeadm's pod reported as already sharing its port")
	}
	p, err := PortSharingStatic("kube-apiserver", mirror)
	if err != nil {
		t.Fatal(err)
	}
	if !SharesPort(p) {
		t.Error("rewritten static pod does not share its port")
	}
	if p.Name != "kube-apiserver" || p.Spec.NodeName != "" || p.Spec.Priority != nil {
		t.Errorf("name %q nodeName %q priority %v", p.Name, p.Spec.NodeName, p.Spec.Priority)
	}
	// kubeadm's 30 s grace would be waited out in full at its removal.
	if g := p.Spec.TerminationGracePeriodSeconds; *mirror.Spec.TerminationGracePeriodSeconds != 30 || g == nil || *g != portSharingGrace {
		t.Errorf("grace period %v, want %ds", g, portSharingGrace)
	}
	if port := apiServerPort(mirror); port != 6443 {
		t.Errorf("API server port %d, want 6443", port)
	}
	for k := range p.Annotations {
		if k == "kubernetes.io/config.mirror" || k == "kubernetes.io/config.hash" {
			t.Errorf("kubelet bookkeeping %s copied into the manifest", k)
		}
	}
	// The static pod keeps its node-pinned probe host and advertise address.
	c := p.Spec.Containers[0]
	if c.LivenessProbe.HTTPGet.Host != "172.18.0.4" || !slices.Contains(c.Command, "--advertise-address=172.18.0.4") {
		t.Error("the static pod lost its own node's address")
	}
	// Applying it twice changes nothing.
	again, _ := PortSharingStatic("kube-apiserver", &corev1.Pod{ObjectMeta: p.ObjectMeta, Spec: p.Spec})
	if !slices.Equal(again.Spec.Containers[0].Command, c.Command) {
		t.Errorf("not idempotent:\n%v\n%v", c.Command, again.Spec.Containers[0].Command)
	}
}

func TestControllerManagerKeepsLoopbackProbe(t *testing.T) {
	mirror := loadMirror(t)
	mirror.Spec.Containers[0].LivenessProbe.HTTPGet.Host = "127.0.0.1"
	tmpl, err := SelfHostedTemplate("kube-controller-manager", mirror)
	if err != nil {
		t.Fatal(err)
	}
	c := tmpl.Spec.Containers[0]
	if c.LivenessProbe.HTTPGet.Host != "127.0.0.1" || c.LivenessProbe.HTTPGet.Port != intstr.FromInt32(10257) {
		t.Errorf("probe %s:%v, want 127.0.0.1:10257", c.LivenessProbe.HTTPGet.Host, c.LivenessProbe.HTTPGet.Port)
	}
	if _, ok := tmpl.Annotations[checkpoint.CheckpointAnnotation]; ok {
		t.Error("only the API server is checkpointed")
	}
	if _, err := SelfHostedTemplate("etcd", mirror); err == nil {
		t.Error("etcd stays static; it must be refused")
	}
}

func TestReplaceFlag(t *testing.T) {
	got := replaceFlag([]string{"x", "--a=1", "--b", "--a=2"}, "--a", "3")
	if !slices.Equal(got, []string{"x", "--a=3", "--b"}) {
		t.Errorf("got %v", got)
	}
	if got := replaceFlag([]string{"x"}, "--a", "1"); !slices.Equal(got, []string{"x", "--a=1"}) {
		t.Errorf("append: got %v", got)
	}
}

func TestPollStartupOftenKeepsTheTimeAllowed(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		in                    corev1.Probe
		delay, period, faults int32
	}{
		{"kubeadm's", corev1.Probe{InitialDelaySeconds: 10, PeriodSeconds: 10, FailureThreshold: 24}, 0, 2, 125},
		{"the API's defaults", corev1.Probe{}, 0, 2, 15},
		{"an odd budget rounds up", corev1.Probe{PeriodSeconds: 5, FailureThreshold: 3}, 0, 2, 8},
		{"already quick", corev1.Probe{InitialDelaySeconds: 3, PeriodSeconds: 1, FailureThreshold: 30}, 3, 1, 30},
	} {
		p := tc.in
		pollStartupOften(&p)
		if p.InitialDelaySeconds != tc.delay || p.PeriodSeconds != tc.period || p.FailureThreshold != tc.faults {
			t.Errorf("%s: delay %d, period %d, failures %d; want %d, %d, %d", tc.name,
				p.InitialDelaySeconds, p.PeriodSeconds, p.FailureThreshold, tc.delay, tc.period, tc.faults)
		}
	}
	pollStartupOften(nil) // a pod with no startup probe keeps none
}
