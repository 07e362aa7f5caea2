package pivot

import (
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// kubeadmEndpointAnnotation is where kubeadm records an API server's
// advertised endpoint on its static pod; kubeadm upgrade reads it back.
const kubeadmEndpointAnnotation = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"

// StaticFromTemplate turns a self-hosted component's pod template back into
// a static pod, the inverse of SelfHostedTemplate as far as a static pod
// needs: kubeadm's name, labels and file layout, no scheduling fields, no
// checkpoint annotations. Port sharing stays, so the static pod starts
// beside the self-hosted one it replaces.
//
// nodeIP, when set, replaces $(HOST_IP) in the API server's flags and
// probes, as kubeadm writes them; empty keeps the downward API, which the
// kubelet also resolves for static pods. hostDir names the host directory
// that replaces each Secret or ConfigMap volume; every other volume must
// already be a hostPath.
func StaticFromTemplate(component string, t *corev1.PodTemplateSpec, nodeIP string, hostDir func(corev1.Volume) string) (*corev1.Pod, error) {
	if _, ok := securePort[component]; !ok {
		return nil, fmt.Errorf("unknown component %q", component)
	}
	if len(t.Spec.Containers) != 1 {
		return nil, fmt.Errorf("the %s template has %d containers; a static control-plane pod has one", component, len(t.Spec.Containers))
	}
	spec := t.Spec.DeepCopy()
	spec.NodeSelector, spec.Tolerations, spec.Affinity = nil, nil, nil
	spec.NodeName, spec.SchedulerName = "", ""
	spec.Priority = nil
	for i, v := range spec.Volumes {
		switch {
		case v.HostPath != nil:
		case v.Secret != nil || v.ConfigMap != nil:
			spec.Volumes[i].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir(v), Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}
		default:
			return nil, fmt.Errorf("the %s template's volume %q is neither a hostPath, a Secret nor a ConfigMap; a static pod cannot mount it", component, v.Name)
		}
	}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      component,
			Namespace: kube.Namespace,
			Labels:    map[string]string{"component": component, "tier": "control-plane"},
		},
		Spec: *spec,
	}
	if component != "kube-apiserver" || nodeIP == "" {
		return pod, nil
	}
	if net.ParseIP(nodeIP) == nil {
		return nil, fmt.Errorf("%q is not an IP address", nodeIP)
	}
	c := &pod.Spec.Containers[0]
	c.Command = replaceFlag(c.Command, "--advertise-address", nodeIP)
	c.Env = withoutEnv(c.Env, "HOST_IP")
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil && p.HTTPGet != nil {
			p.HTTPGet.Host = nodeIP
		}
	}
	pod.Annotations = map[string]string{kubeadmEndpointAnnotation: net.JoinHostPort(nodeIP, strconv.Itoa(int(apiServerPort(pod))))}
	return pod, nil
}

// mountPathOf gives each Secret volume of the template the host directory
// revert writes it back to: where the container mounts it.
func mountPathOf(t *corev1.PodTemplateSpec) func(corev1.Volume) string {
	mounts := secretMounts(t)
	return func(v corev1.Volume) string { return mounts[v.Name] }
}

// secretMounts maps each Secret volume of the container to where it mounts.
func secretMounts(t *corev1.PodTemplateSpec) map[string]string {
	out := map[string]string{}
	for _, v := range t.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		for _, m := range t.Spec.Containers[0].VolumeMounts {
			if m.Name == v.Name {
				out[v.Name] = m.MountPath
			}
		}
	}
	return out
}
