package upgrade

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
)

func apiServerTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name:    "kube-apiserver",
		Image:   "registry.k8s.io/kube-apiserver:v1.36.3",
		Command: []string{"kube-apiserver", "--advertise-address=$(HOST_IP)", "--audit-log-maxage=30", "--permit-port-sharing=true"},
	}}}}
}

func TestApplyMovesTheImageAndSetsFlags(t *testing.T) {
	comp := Components[0]
	req := Request{Version: "v1.37.2", Set: map[string]map[string]string{
		"kube-apiserver":          {"audit-log-maxage": "7", "profiling": "false"},
		"kube-controller-manager": {"v": "2"}, // another component's: ignored here
	}}
	tmpl := apiServerTemplate()
	out, ch, err := Apply(comp, tmpl, req)
	if err != nil {
		t.Fatal(err)
	}
	c := out.Spec.Containers[0]
	if c.Image != "registry.k8s.io/kube-apiserver:v1.37.2" {
		t.Errorf("image %s", c.Image)
	}
	want := []string{"kube-apiserver", "--advertise-address=$(HOST_IP)", "--audit-log-maxage=7", "--permit-port-sharing=true", "--profiling=false"}
	if strings.Join(c.Command, " ") != strings.Join(want, " ") {
		t.Errorf("command\n got %v\nwant %v", c.Command, want)
	}
	if tmpl.Spec.Containers[0].Image != "registry.k8s.io/kube-apiserver:v1.36.3" || tmpl.Spec.Containers[0].Command[2] != "--audit-log-maxage=30" {
		t.Errorf("Apply changed its input: %v", tmpl.Spec.Containers[0])
	}
	wantDiff := "kube-apiserver:\n  image  registry.k8s.io/kube-apiserver:v1.36.3 -> registry.k8s.io/kube-apiserver:v1.37.2\n" +
		"  flag   --audit-log-maxage=30 -> --audit-log-maxage=7\n  flag   +--profiling=false"
	if ch.String() != wantDiff {
		t.Errorf("diff\n%s\nwant\n%s", ch, wantDiff)
	}
	// A template that holds the request is done: a rerun changes nothing.
	again, ch2, err := Apply(comp, out, req)
	if err != nil || !ch2.Empty() || strings.Join(again.Spec.Containers[0].Command, " ") != strings.Join(want, " ") {
		t.Errorf("a second Apply changed %v (err %v)", ch2, err)
	}
}

func TestApplyKeepsArgsStyleAndCoreDNSNeverGoesDown(t *testing.T) {
	proxy := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.36.3@sha256:0123", Command: []string{"/usr/local/bin/kube-proxy"}, Args: []string{"--config=/var/lib/kube-proxy/config.conf"},
	}}}}
	out, ch, err := Apply(Components[3], proxy, Request{Version: "v1.37.2"})
	if err != nil || out.Spec.Containers[0].Image != "registry.k8s.io/kube-proxy:v1.37.2" || ch.Empty() {
		t.Errorf("kube-proxy: %s %v %v", out.Spec.Containers[0].Image, ch, err)
	}
	dns := func(tag string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:" + tag}}}}
	}
	for _, tc := range []struct{ have, version, want string }{
		{"v1.13.1", images.KubernetesVersion, images.CoreDNSVersion}, // moves with Kubernetes'
		{"v9.0.0", images.KubernetesVersion, "v9.0.0"},               // never down
		{"v1.13.1", "v1.36.3", "v1.13.1"},                            // no pairing known for that minor
	} {
		out, _, err := Apply(Components[4], dns(tc.have), Request{Version: tc.version})
		if got := out.Spec.Containers[0].Image; err != nil || got != "registry.k8s.io/coredns/coredns:"+tc.want {
			t.Errorf("coredns %s to Kubernetes %s: %s (%v)", tc.have, tc.version, got, err)
		}
	}
}

func TestParseSetRefusesWhatItCannotApply(t *testing.T) {
	got, err := ParseSet([]string{"kube-apiserver.audit-log-maxage=7", "kube-scheduler.--v=4"})
	if err != nil || got["kube-apiserver"]["audit-log-maxage"] != "7" || got["kube-scheduler"]["v"] != "4" {
		t.Fatalf("%v %v", got, err)
	}
	for in, want := range map[string]string{
		"kube-apiserver.audit-log-maxage":           "is not <component>.<flag>=<value>",
		"audit-log-maxage=7":                        "is not <component>.<flag>=<value>",
		"kube-proxy.v=2":                            "the component must be",
		"etcd.quota-backend-bytes=1":                "the component must be",
		"kube-apiserver.Bad_Flag=1":                 "is not a flag name",
		"kube-apiserver.permit-port-sharing=false":  "keeps --permit-port-sharing",
		"kube-apiserver.bind-address=0.0.0.0":       "keeps --bind-address",
		"kube-apiserver.audit-policy-file=a\nb":     "may not span lines",
		"kube-controller-manager.bind-address=::":   "", // only the API server's is managed
		"kube-apiserver.enable-admission-plugins=a": "",
	} {
		_, err := ParseSet([]string{in})
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"v1.36.3", "v1.37.2", ""},
		{"v1.37.0", "v1.37.2", ""},
		{"v1.37.2", "v1.37.0", ""}, // a patch down within a minor is allowed
		{"v1.37.2", "v1.36.3", "goes down a minor"},
		{"v1.35.4", "v1.37.2", "skips a minor version; upgrade to v1.36 first"},
		{"v1.37.2", "v2.0.0", "changes the major"},
	} {
		err := CheckPath(tc.from, tc.to)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s -> %s: %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}

func node(name, kubelet string, cp bool, imgs ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if cp {
		n.Labels["node-role.kubernetes.io/control-plane"] = ""
	}
	n.Status.NodeInfo.KubeletVersion = kubelet
	for _, i := range imgs {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{i, strings.Split(i, ":")[0] + "@sha256:00"}})
	}
	return n
}

func TestCheckSkew(t *testing.T) {
	ok := []corev1.Node{node("a", "v1.36.3", true), node("b", "v1.34.0", false)}
	if err := CheckSkew("v1.37.2", ok); err != nil {
		t.Errorf("kubelets one and three minors behind: %v", err)
	}
	err := CheckSkew("v1.37.2", []corev1.Node{node("a", "v1.38.0", true), node("b", "v1.33.9", false), node("c", "v1.37.2", false)})
	if err == nil || !strings.Contains(err.Error(), "a runs kubelet v1.38.0, newer than v1.37.2") ||
		!strings.Contains(err.Error(), "b runs kubelet v1.33.9, more than 3 minors behind") || strings.Contains(err.Error(), "c runs") {
		t.Errorf("got %v", err)
	}
}

func TestMissingImagesNamesNodeAndImage(t *testing.T) {
	nodes := []corev1.Node{
		node("cp1", "v1.36.3", true, "registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/kube-proxy:v1.37.2"),
		node("cp2", "v1.36.3", true, "registry.k8s.io/kube-proxy:v1.37.2"),
		node("w1", "v1.36.3", false, "docker.io/library/busybox:1.36"),
	}
	changes := []Change{
		{Component: "kube-apiserver", ImageFrom: "registry.k8s.io/kube-apiserver:v1.36.3", ImageTo: "registry.k8s.io/kube-apiserver:v1.37.2"},
		{Component: "kube-proxy", ImageFrom: "registry.k8s.io/kube-proxy:v1.36.3", ImageTo: "registry.k8s.io/kube-proxy:v1.37.2"},
		{Component: "coredns", ImageFrom: "x:1", ImageTo: "x:1"},
	}
	got := strings.Join(MissingImages(nodes, Needs(changes)), "; ")
	want := "cp2 lacks registry.k8s.io/kube-apiserver:v1.37.2; w1 lacks registry.k8s.io/kube-proxy:v1.37.2"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
