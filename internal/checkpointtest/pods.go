// Package checkpointtest holds the pods that the checkpoint contract's tests
// and the checkpointer's tests both start from.
package checkpointtest

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

const (
	Namespace = kube.Namespace
	Node      = "node-1"
)

// ParentPod is a self-hosted API server pod as a DaemonSet would make it,
// with no status.
func ParentPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: Namespace, UID: types.UID("uid-" + name),
			Labels:      map[string]string{"k8s-app": "kube-apiserver", "controller-revision-hash": "7c9d"},
			Annotations: map[string]string{checkpoint.CheckpointAnnotation: "true"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-apiserver",
				UID: "ds-uid", Controller: new(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName:           Node,
			HostNetwork:        true,
			ServiceAccountName: "default",
			Containers: []corev1.Container{{
				Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2",
				Command:      []string{"kube-apiserver", "--permit-port-sharing=true"},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-x1", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}, {Name: "extra", MountPath: "/etc/extra"}},
			}},
			Volumes: []corev1.Volume{
				TokenVolume("kube-api-access-x1"),
				{Name: "extra", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "apiserver-extra"}}},
			},
		},
	}
}

// TokenVolume is the projected service-account token volume the API server
// adds to every pod.
func TokenVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3607))}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
		},
	}}}
}

// Inadmissible reports what NodeRestriction and the kubelet would hold against
// a static pod: references to the API's objects, and host ports.
func Inadmissible(p *corev1.Pod) []string {
	var bad []string
	if p.Spec.ServiceAccountName != "" || p.Spec.DeprecatedServiceAccount != "" {
		bad = append(bad, "service account")
	}
	if len(p.OwnerReferences) > 0 {
		bad = append(bad, "owner references")
	}
	if len(p.Spec.ImagePullSecrets) > 0 {
		bad = append(bad, "image pull secrets")
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil || v.ConfigMap != nil || v.Projected != nil || v.PersistentVolumeClaim != nil {
			bad = append(bad, "volume "+v.Name)
		}
	}
	for _, c := range p.Spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef != nil || e.ValueFrom.ConfigMapKeyRef != nil) {
				bad = append(bad, "env "+e.Name)
			}
		}
		for _, m := range c.VolumeMounts {
			found := false
			for _, v := range p.Spec.Volumes {
				found = found || v.Name == m.Name
			}
			if !found {
				bad = append(bad, "mount of missing volume "+m.Name)
			}
		}
		if len(c.Ports) > 0 && p.Spec.HostNetwork {
			bad = append(bad, "host ports")
		}
	}
	return bad
}
