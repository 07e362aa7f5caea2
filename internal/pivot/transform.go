package pivot

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// securePort is each component's HTTPS port, which kubeadm probes by the name "probe-port".
var securePort = map[string]int32{
	"kube-apiserver":          6443,
	"kube-controller-manager": 10257,
	"kube-scheduler":          10259,
}

// PortSharingFlag lets two processes bind the same port on one node, so a
// new pod comes up beside the one it replaces with no gap.
const PortSharingFlag = "--permit-port-sharing=true"

// SelectorLabels select a self-hosted component's pods.
func SelectorLabels(component string) map[string]string {
	return map[string]string{kube.AppLabel: component}
}

// SelfHostedTemplate turns a kubeadm static pod into the pod template of its
// self-hosted workload:
//   - the same containers, flags, images and hostPath volumes (kubeadm's
//     /etc/kubernetes/pki layout, present on every control-plane node);
//   - node-specific values from the downward API (the API server's
//     --advertise-address becomes $(HOST_IP));
//   - --permit-port-sharing, and no declared ports, so the pod starts beside
//     the static pod and its own checkpoint;
//   - probes on the numeric port, a startup probe that polls every
//     startupProbePeriod seconds, pinned to control-plane nodes;
//   - the short grace period of the port-sharing static pods;
//   - for the API server, the checkpoint annotation.
func SelfHostedTemplate(component string, static *corev1.Pod) (corev1.PodTemplateSpec, error) {
	port, ok := securePort[component]
	if !ok {
		return corev1.PodTemplateSpec{}, fmt.Errorf("unknown component %q", component)
	}
	if len(static.Spec.Containers) != 1 {
		return corev1.PodTemplateSpec{}, fmt.Errorf("static pod %s has %d containers; kubeadm's has one", static.Name, len(static.Spec.Containers))
	}
	spec := static.Spec.DeepCopy()
	spec.NodeName = ""
	spec.Priority = nil // the priority class sets it; a copied value fails admission on a mismatch
	spec.PreemptionPolicy = nil
	spec.ServiceAccountName = ""
	spec.DeprecatedServiceAccount = ""
	spec.AutomountServiceAccountToken = ptr.To(false) // it authenticates with kubeadm's files, not a token
	spec.EnableServiceLinks = ptr.To(false)
	spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	spec.TerminationGracePeriodSeconds = ptr.To(portSharingGrace)
	spec.NodeSelector = map[string]string{kube.ControlPlaneLabel: ""}
	spec.Tolerations = []corev1.Toleration{
		{Key: kube.ControlPlaneLabel, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	}
	c := &spec.Containers[0]
	prepareContainer(component, c, port)
	pollStartupOften(c.StartupProbe)
	// An API server bound to every address splits 6443 with its checkpoint
	// by address: the checkpoint binds only the node's (see
	// checkpoint.ArgsAnnotation), so 127.0.0.1 reaches this pod alone and its
	// probes aim there. Bound to one address, it is probed there: the pod IP,
	// which on the host network is the node's.
	splitsPort := false
	if component == "kube-apiserver" {
		splitsPort = bindsEveryAddress(c.Command)
		c.Command = replaceFlag(c.Command, "--advertise-address", "$(HOST_IP)")
		c.Env = append(withoutEnv(c.Env, "HOST_IP"), corev1.EnvVar{
			Name:      "HOST_IP",
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}},
		})
		host := ""
		if splitsPort {
			host = "127.0.0.1"
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil {
				p.HTTPGet.Host = host
			}
		}
	}
	labels := map[string]string{"tier": "control-plane", "component": component, "app.kubernetes.io/managed-by": ssa.FieldManager}
	for k, v := range SelectorLabels(component) {
		labels[k] = v
	}
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: *spec}
	if component == "kube-apiserver" {
		t.Annotations = map[string]string{checkpoint.CheckpointAnnotation: "true"}
		if splitsPort {
			t.Annotations[checkpoint.ArgsAnnotation] = "--bind-address=$(HOST_IP)"
		}
	}
	return t, nil
}

// startupProbePeriod is how often a self-hosted pod's startup probe polls.
// kubeadm's polls every 10 s, so a server that has come up could wait 10 s
// more to be Ready, and its checkpoint would serve for that long too.
const startupProbePeriod = 2

// pollStartupOften makes a startup probe poll every startupProbePeriod
// seconds from the container's start, allowing it as long as before.
func pollStartupOften(p *corev1.Probe) {
	if p == nil {
		return
	}
	period, failures := p.PeriodSeconds, p.FailureThreshold
	if period <= 0 {
		period = 10 // the API's defaults
	}
	if failures <= 0 {
		failures = 3
	}
	if period <= startupProbePeriod {
		return
	}
	allowed := p.InitialDelaySeconds + period*failures
	p.InitialDelaySeconds = 0
	p.PeriodSeconds = startupProbePeriod
	p.FailureThreshold = (allowed + startupProbePeriod - 1) / startupProbePeriod
}

// bindsEveryAddress reports whether kube-apiserver's --bind-address is
// unset (0.0.0.0 by default) or a wildcard.
func bindsEveryAddress(cmd []string) bool {
	v := flagValue(cmd, "--bind-address")
	return v == "" || v == "0.0.0.0" || v == "::"
}

// PortSharingStatic returns kubeadm's static pod, rewritten to share its
// port: the flag added, ports dropped, probes on the numeric port. It is
// written back to /etc/kubernetes/manifests before the workload starts.
func PortSharingStatic(component string, mirror *corev1.Pod) (*corev1.Pod, error) {
	port, ok := securePort[component]
	if !ok {
		return nil, fmt.Errorf("unknown component %q", component)
	}
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        component,
			Namespace:   kube.Namespace,
			Labels:      mirror.Labels,
			Annotations: map[string]string{},
		},
		Spec: *mirror.Spec.DeepCopy(),
	}
	for k, v := range mirror.Annotations {
		if !strings.HasPrefix(k, "kubernetes.io/config.") { // the kubelet's own bookkeeping
			p.Annotations[k] = v
		}
	}
	p.Spec.NodeName = ""
	p.Spec.Priority = nil
	// kube-apiserver stops listening on SIGTERM but then waits out the whole
	// grace period; with port sharing its sibling on the node already takes
	// the new connections, so a short one is enough for the open ones.
	p.Spec.TerminationGracePeriodSeconds = ptr.To(portSharingGrace)
	for i := range p.Spec.Containers {
		prepareContainer(component, &p.Spec.Containers[i], port)
		// Ready as soon as it serves: the pivot waits on it.
		pollStartupOften(p.Spec.Containers[i].StartupProbe)
	}
	return p, nil
}

// portSharingGrace is the port-sharing static pods' grace period, in seconds.
const portSharingGrace int64 = 5

// apiServerPort is the port kube-apiserver listens on in pod p.
func apiServerPort(p *corev1.Pod) int32 {
	for _, c := range p.Spec.Containers {
		if v := flagValue(c.Command, "--secure-port"); v != "" {
			if port, err := strconv.ParseInt(v, 10, 32); err == nil {
				return int32(port)
			}
		}
	}
	return securePort["kube-apiserver"]
}

// SharesPort reports whether a static pod already runs with port sharing.
func SharesPort(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if hasFlag(c.Command, "--permit-port-sharing") && len(c.Ports) == 0 {
			return true
		}
	}
	return false
}

func prepareContainer(component string, c *corev1.Container, port int32) {
	c.Ports = nil
	c.ImagePullPolicy = corev1.PullIfNotPresent
	c.Command = replaceFlag(c.Command, "--permit-port-sharing", "true")
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.Type == intstr.String {
			p.HTTPGet.Port = intstr.FromInt32(port)
		}
	}
}

// replaceFlag sets --name=value, replacing any existing value, or appends it.
func replaceFlag(cmd []string, name, value string) []string {
	out := make([]string, 0, len(cmd)+1)
	found := false
	for _, arg := range cmd {
		if arg == name || strings.HasPrefix(arg, name+"=") {
			if !found {
				out = append(out, name+"="+value)
			}
			found = true
			continue
		}
		out = append(out, arg)
	}
	if !found {
		out = append(out, name+"="+value)
	}
	return out
}

func hasFlag(cmd []string, name string) bool {
	for _, arg := range cmd {
		if arg == name || arg == name+"=true" {
			return true
		}
	}
	return false
}

func withoutEnv(env []corev1.EnvVar, name string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range env {
		if e.Name != name {
			out = append(out, e)
		}
	}
	return out
}

// flagValue returns --name's value in cmd.
func flagValue(cmd []string, name string) string {
	for _, arg := range cmd {
		if v, ok := strings.CutPrefix(arg, name+"="); ok {
			return v
		}
	}
	return ""
}
