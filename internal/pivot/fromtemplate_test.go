package pivot

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// A static pod revert writes from the self-hosted template is kubeadm's
// static pod again, with port sharing: the same flags, kubeadm's
// annotation, and the Secret mounted from kubeadm's pki directory.
func TestStaticFromTemplateRevertsTheSelfHostedTemplate(t *testing.T) {
	mirror := loadMirror(t)
	tmpl, err := SelfHostedTemplate("kube-apiserver", mirror)
	if err != nil {
		t.Fatal(err)
	}
	if err := MountCertsSecret(&tmpl, APIServerSecret); err != nil {
		t.Fatal(err)
	}
	tmpl.Spec.Affinity = &corev1.Affinity{} // revert's own hold on the DaemonSet
	static, err := StaticFromTemplate("kube-apiserver", &tmpl, "172.18.0.4", mountPathOf(&tmpl))
	if err != nil {
		t.Fatal(err)
	}
	c := static.Spec.Containers[0]
	want := append(slices.Clone(mirror.Spec.Containers[0].Command), PortSharingFlag)
	if !slices.Equal(c.Command, want) {
		t.Errorf("flags:\n got %v\nwant %v", c.Command, want)
	}
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HOST_IP" }) {
		t.Error("the downward API's HOST_IP is left in a kubeadm manifest")
	}
	if got := static.Annotations[kubeadmEndpointAnnotation]; got != mirror.Annotations[kubeadmEndpointAnnotation] {
		t.Errorf("kubeadm's endpoint annotation %q, want %q", got, mirror.Annotations[kubeadmEndpointAnnotation])
	}
	if static.Name != "kube-apiserver" || static.Namespace != "kube-system" || static.Labels["component"] != "kube-apiserver" || static.Labels["tier"] != "control-plane" || len(static.Labels) != 2 {
		t.Errorf("metadata %s/%s %v; want kubeadm's", static.Namespace, static.Name, static.Labels)
	}
	if static.Spec.NodeSelector != nil || static.Spec.Tolerations != nil || static.Spec.Affinity != nil {
		t.Error("scheduling fields kept in a static pod")
	}
	if !equality.Semantic.DeepEqual(static.Spec.Volumes, mirror.Spec.Volumes) {
		t.Errorf("volumes:\n got %+v\nwant %+v", static.Spec.Volumes, mirror.Spec.Volumes)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p.HTTPGet.Host != "172.18.0.4" {
			t.Errorf("probe aimed at %q, want the advertised address as kubeadm does", p.HTTPGet.Host)
		}
	}
	if len(c.Ports) != 0 || !SharesPort(static) {
		t.Error("the static pod would not start beside the self-hosted one")
	}
}

// recover keeps the downward API and takes the Secret from its own copy;
// a volume no static pod can mount is refused by name.
func TestStaticFromTemplateForRecover(t *testing.T) {
	tmpl, err := SelfHostedTemplate("kube-apiserver", loadMirror(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := MountCertsSecret(&tmpl, APIServerSecret); err != nil {
		t.Fatal(err)
	}
	static, err := StaticFromTemplate("kube-apiserver", &tmpl, "", func(v corev1.Volume) string { return "/copies/" + v.Name })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(static.Spec.Containers[0].Command, "--advertise-address=$(HOST_IP)") {
		t.Error("without a node address the downward API must stay")
	}
	if !slices.ContainsFunc(static.Spec.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil && v.HostPath.Path == "/copies/k8s-certs" }) {
		t.Errorf("the Secret volume is not read from its copy: %+v", static.Spec.Volumes)
	}
	tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	if _, err := StaticFromTemplate("kube-apiserver", &tmpl, "", func(corev1.Volume) string { return "" }); err == nil || !strings.Contains(err.Error(), `volume "cache"`) {
		t.Errorf("an emptyDir volume: %v", err)
	}
}
