package pivot

import (
	"fmt"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// pkiFiles lists the files under kubeadm's pki directory that the container's
// flags name, as Secret items: key etcd-ca.crt -> path etcd/ca.crt.
func pkiFiles(c *corev1.Container) []corev1.KeyToPath {
	seen := map[string]bool{}
	var items []corev1.KeyToPath
	for _, arg := range c.Command {
		_, value, ok := strings.Cut(arg, "=")
		rel, under := strings.CutPrefix(value, kubeadmPKI+"/")
		if !ok || !under || seen[rel] {
			continue
		}
		seen[rel] = true
		items = append(items, corev1.KeyToPath{Key: strings.ReplaceAll(rel, "/", "-"), Path: rel})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return items
}

// MountCertsSecret swaps the hostPath volume of kubeadm's pki directory for
// Secret secret, projected at the same paths, so every flag stays as kubeadm
// wrote it. The checkpointer copies the Secret to disk with the pod.
func MountCertsSecret(t *corev1.PodTemplateSpec, secret string) error {
	c := &t.Spec.Containers[0]
	items := pkiFiles(c)
	if len(items) == 0 {
		return fmt.Errorf("the API server's flags name no file under %s", kubeadmPKI)
	}
	for i, v := range t.Spec.Volumes {
		if v.HostPath == nil || path.Clean(v.HostPath.Path) != kubeadmPKI {
			continue
		}
		t.Spec.Volumes[i].VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, Items: items, DefaultMode: ptr.To[int32](0o600),
		}}
		return nil
	}
	return fmt.Errorf("the API server mounts no hostPath volume of %s", kubeadmPKI)
}
