package checkpoint_test

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointtest"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

const secretRoot = "/etc/kubernetes/checkpoint-secrets"

// richPod uses every kind of volume a control-plane pod may have.
func richPod() *corev1.Pod {
	p := checkpointtest.ParentPod("kube-apiserver-x7k2p")
	p.Annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] = "172.18.0.3:6443"
	p.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
	p.Annotations[checkpoint.ConfigSourceAnnotation] = "api"
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	p.Spec.NodeSelector = map[string]string{"node-role.kubernetes.io/control-plane": ""}
	p.Spec.Affinity = &corev1.Affinity{}
	p.Spec.PriorityClassName = "system-node-critical"
	p.Spec.Volumes = append(p.Spec.Volumes,
		corev1.Volume{Name: "audit", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "audit-policy"},
			Items:                []corev1.KeyToPath{{Key: "policy.yaml", Path: "audit/policy.yaml", Mode: new(int32(0o400))}},
			DefaultMode:          new(int32(0o644)),
		}}},
		corev1.Volume{Name: "bundle", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "front-proxy"}}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "extra-ca"}, Optional: new(true)}},
			},
		}}},
		corev1.Volume{Name: "pki", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/kubernetes/pki"}}},
	)
	c := &p.Spec.Containers[0]
	c.ImagePullPolicy = corev1.PullAlways
	c.Ports = []corev1.ContainerPort{{Name: "probe-port", ContainerPort: 6443, HostPort: 6443}}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/livez", Port: intstr.FromString("probe-port")}}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("probe-port")}}}
	c.Env = []corev1.EnvVar{{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "audit", MountPath: "/etc/audit"})
	return p
}

func TestSanitizeMakesAnAdmissibleStaticPod(t *testing.T) {
	p := richPod()
	cp, copies, err := checkpoint.Sanitize(p, secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	if bad := checkpointtest.Inadmissible(cp); len(bad) > 0 {
		t.Fatalf("checkpoint still has %v", bad)
	}
	if cp.Name != p.Name || cp.Namespace != checkpointtest.Namespace || checkpoint.CheckpointOf(cp) != p.Name {
		t.Errorf("identity = %s/%s of %q", cp.Namespace, cp.Name, checkpoint.CheckpointOf(cp))
	}
	if cp.APIVersion != "v1" || cp.Kind != "Pod" {
		t.Errorf("type = %s %s, want v1 Pod", cp.APIVersion, cp.Kind)
	}
	if checkpoint.WantsCheckpoint(cp) {
		t.Error("a checkpoint asks to be checkpointed")
	}
	for _, k := range []string{checkpoint.CheckpointAnnotation, "kubectl.kubernetes.io/last-applied-configuration", checkpoint.ConfigSourceAnnotation} {
		if _, ok := cp.Annotations[k]; ok {
			t.Errorf("annotation %s kept", k)
		}
	}
	if cp.Annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] != "172.18.0.3:6443" {
		t.Error("kubeadm's endpoint annotation lost")
	}
	if _, ok := cp.Labels["controller-revision-hash"]; ok || cp.Labels["k8s-app"] != "kube-apiserver" {
		t.Errorf("labels = %v, want the app label without the controller's hash", cp.Labels)
	}
	if cp.Spec.NodeName != "" || cp.Spec.NodeSelector != nil || cp.Spec.Affinity != nil {
		t.Error("scheduling fields kept")
	}
	if cp.Spec.PriorityClassName != "system-node-critical" {
		t.Error("priority class lost")
	}
	if cp.Spec.AutomountServiceAccountToken == nil || *cp.Spec.AutomountServiceAccountToken {
		t.Error("token automount not disabled")
	}
	if !reflect.DeepEqual(cp.Status, corev1.PodStatus{}) {
		t.Error("status kept")
	}
	c := cp.Spec.Containers[0]
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("pull policy = %s, want IfNotPresent", c.ImagePullPolicy)
	}
	if c.LivenessProbe.HTTPGet.Port != intstr.FromInt32(6443) || c.ReadinessProbe.TCPSocket.Port != intstr.FromInt32(6443) {
		t.Errorf("probes = %v / %v, want port 6443 by number", c.LivenessProbe.HTTPGet.Port, c.ReadinessProbe.TCPSocket.Port)
	}
	if len(c.Env) != 1 || c.Env[0].ValueFrom.FieldRef == nil {
		t.Error("downward API environment lost")
	}

	var volumes []string
	for _, v := range cp.Spec.Volumes {
		volumes = append(volumes, v.Name)
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
		}
	}
	if want := []string{"extra", "audit", "bundle", "pki"}; !reflect.DeepEqual(volumes, want) {
		t.Fatalf("volumes = %v, want %v (the token volume dropped)", volumes, want)
	}
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(m.Name, "kube-api-access") {
			t.Error("token mount kept")
		}
	}
	if got := cp.Spec.Volumes[0].HostPath; got.Path != secretRoot+"/kube-system/kube-apiserver-x7k2p/extra" || *got.Type != corev1.HostPathDirectory {
		t.Errorf("secret volume = %+v", got)
	}
	if cp.Spec.Volumes[3].HostPath.Path != "/etc/kubernetes/pki" {
		t.Error("hostPath volume changed")
	}

	if len(copies) != 3 {
		t.Fatalf("copies = %+v, want extra, audit, bundle", copies)
	}
	if got := copies[1]; got.Volume != "audit" || got.DefaultMode != 0o644 || got.Sources[0].Kind != "ConfigMap" || len(got.Sources[0].Items) != 1 {
		t.Errorf("audit copy = %+v", got)
	}
	if got := copies[2]; len(got.Sources) != 2 || got.Sources[0].Kind != "Secret" || !got.Sources[1].Optional || got.DefaultMode != corev1.ProjectedVolumeSourceDefaultMode {
		t.Errorf("bundle copy = %+v", got)
	}
	if p.Spec.ServiceAccountName == "" || len(p.Spec.Volumes) != 5 {
		t.Error("Sanitize changed its argument")
	}
}

func TestSanitizeIsIdempotent(t *testing.T) {
	once, _, err := checkpoint.Sanitize(richPod(), secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	twice, copies, err := checkpoint.Sanitize(once, secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(once, twice) {
		t.Fatalf("a checkpoint of a checkpoint differs:\n%+v\n%+v", once, twice)
	}
	if len(copies) != 0 {
		t.Fatalf("a checkpoint of a checkpoint asks for copies: %+v", copies)
	}
}

func TestSanitizeAcceptsBootkubeCheckpoints(t *testing.T) {
	p := checkpointtest.ParentPod("kube-apiserver-x7k2p-node-1")
	p.Annotations = map[string]string{checkpoint.BootkubeCheckpointOfAnnotation: "kube-apiserver-x7k2p"}
	cp, _, err := checkpoint.Sanitize(p, secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Name != "kube-apiserver-x7k2p" || cp.Annotations[checkpoint.CheckpointOfAnnotation] != "kube-apiserver-x7k2p" {
		t.Fatalf("got %s with %v", cp.Name, cp.Annotations)
	}
	if _, ok := cp.Annotations[checkpoint.BootkubeCheckpointOfAnnotation]; ok {
		t.Error("bootkube's annotation kept next to ours")
	}
}

func TestSanitizeRefusesWhatAStaticPodCannotHave(t *testing.T) {
	cases := map[string]func(*corev1.Pod){
		"secret env": func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}}
		},
		"configMap envFrom": func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{}}}
		},
		"claim": func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}})
		},
		"projected downward API": func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{DownwardAPI: &corev1.DownwardAPIProjection{}}}}}})
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := checkpointtest.ParentPod("p")
			mutate(p)
			_, _, err := checkpoint.Sanitize(p, secretRoot)
			if err == nil || !strings.Contains(err.Error(), "kube-system/p") {
				t.Fatalf("err = %v, want one naming the pod", err)
			}
		})
	}
}

func TestProjectHonoursItemsAndModes(t *testing.T) {
	_, copies, err := checkpoint.Sanitize(richPod(), secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]map[string][]byte{
		"Secret/apiserver-extra":  {"key.pem": []byte("k"), "cert.pem": []byte("c")},
		"ConfigMap/audit-policy":  {"policy.yaml": []byte("p"), "unused": []byte("u")},
		"Secret/front-proxy":      {"ca.crt": []byte("fp")},
		"ConfigMap/not-requested": {"x": []byte("x")},
	}
	want := []map[string]checkpoint.File{
		{"key.pem": {[]byte("k"), 0o600}, "cert.pem": {[]byte("c"), 0o600}},
		{"audit/policy.yaml": {[]byte("p"), 0o400}},
		{"ca.crt": {[]byte("fp"), 0o600}}, // the optional configMap is missing
	}
	for i, vc := range copies {
		got, err := checkpoint.Project(vc, data)
		if err != nil {
			t.Fatalf("%s: %v", vc.Volume, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("%s: files = %v, want %v", vc.Volume, got, want[i])
		}
	}
}

func TestProjectErrors(t *testing.T) {
	vc := checkpoint.VolumeCopy{Volume: "v", DefaultMode: 0o644, Sources: []checkpoint.CopySource{{Kind: "Secret", Name: "s"}}}
	if _, err := checkpoint.Project(vc, nil); err == nil || !strings.Contains(err.Error(), `secret "s"`) {
		t.Errorf("missing secret: err = %v", err)
	}
	vc.Sources[0].Items = []corev1.KeyToPath{{Key: "absent", Path: "a"}}
	if _, err := checkpoint.Project(vc, map[string]map[string][]byte{"Secret/s": {}}); err == nil || !strings.Contains(err.Error(), `"absent"`) {
		t.Errorf("missing key: err = %v", err)
	}
	for _, p := range []string{"../escape", "/abs", "..data"} {
		vc.Sources[0].Items = []corev1.KeyToPath{{Key: "k", Path: p}}
		if _, err := checkpoint.Project(vc, map[string]map[string][]byte{"Secret/s": {"k": nil}}); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	// Without items every key is a file name; one that is not never reaches the disk.
	vc.Sources[0].Items = nil
	for _, k := range []string{"..", "../../etc/passwd", "a/b", ""} {
		if _, err := checkpoint.Project(vc, map[string]map[string][]byte{"Secret/s": {k: []byte("x")}}); err == nil {
			t.Errorf("key %q accepted as a file name", k)
		}
	}
}

func TestWantsCheckpoint(t *testing.T) {
	cases := []struct {
		annotations map[string]string
		want        bool
	}{
		{map[string]string{checkpoint.CheckpointAnnotation: "true"}, true},
		{map[string]string{checkpoint.BootkubeCheckpointAnnotation: "true"}, true},
		{map[string]string{checkpoint.CheckpointAnnotation: "false"}, false},
		{nil, false},
		{map[string]string{checkpoint.CheckpointAnnotation: "true", checkpoint.ConfigSourceAnnotation: "file"}, false},
		{map[string]string{checkpoint.CheckpointAnnotation: "true", checkpoint.ConfigMirrorAnnotation: "abc"}, false},
		{map[string]string{checkpoint.CheckpointAnnotation: "true", checkpoint.CheckpointOfAnnotation: "x"}, false},
		{map[string]string{checkpoint.CheckpointAnnotation: "true", checkpoint.BootkubeCheckpointOfAnnotation: "x"}, false},
	}
	for _, c := range cases {
		p := &corev1.Pod{}
		p.Annotations = c.annotations
		if got := checkpoint.WantsCheckpoint(p); got != c.want {
			t.Errorf("WantsCheckpoint(%v) = %t, want %t", c.annotations, got, c.want)
		}
	}
}

// The API server's checkpoint binds the node's address and probes itself
// there; the parent's probes keep 127.0.0.1, which only the parent serves.
func TestSanitizeBindsTheCheckpointToItsOwnAddress(t *testing.T) {
	p := richPod()
	p.Annotations[checkpoint.ArgsAnnotation] = " --bind-address=$(HOST_IP)  --v=2 "
	c := &p.Spec.Containers[0]
	c.LivenessProbe.HTTPGet.Host = "127.0.0.1"
	c.ReadinessProbe.TCPSocket.Host = "127.0.0.1"
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "127.0.0.1", Path: "/livez", Port: intstr.FromInt32(6443)}}}
	cp, _, err := checkpoint.Sanitize(p, secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	got := cp.Spec.Containers[0]
	if want := append(append([]string{}, c.Command...), "--bind-address=$(HOST_IP)", "--v=2"); !reflect.DeepEqual(got.Command, want) {
		t.Errorf("checkpoint command %q, want %q", got.Command, want)
	}
	if h := []string{got.LivenessProbe.HTTPGet.Host, got.ReadinessProbe.TCPSocket.Host, got.StartupProbe.HTTPGet.Host}; h[0]+h[1]+h[2] != "" {
		t.Errorf("checkpoint probes still name hosts %q; they must reach the checkpoint's own address", h)
	}
	if c.LivenessProbe.HTTPGet.Host != "127.0.0.1" || len(c.Command) == len(got.Command) {
		t.Error("Sanitize changed the parent")
	}
	if _, ok := cp.Annotations[checkpoint.ArgsAnnotation]; ok {
		t.Error("the checkpoint kept the args annotation, so a checkpoint of it would append them twice")
	}
	again, _, err := checkpoint.Sanitize(cp, secretRoot)
	if err != nil || !reflect.DeepEqual(cp, again) {
		t.Errorf("not idempotent (err %v):\n%+v\n%+v", err, cp.Spec.Containers[0].Command, again.Spec.Containers[0].Command)
	}

	p.Spec.Containers[0].Args = []string{"--secure-port=6443"}
	cp, _, err = checkpoint.Sanitize(p, secretRoot)
	if err != nil {
		t.Fatal(err)
	}
	if got := cp.Spec.Containers[0]; !reflect.DeepEqual(got.Args, []string{"--secure-port=6443", "--bind-address=$(HOST_IP)", "--v=2"}) || len(got.Command) != len(c.Command) {
		t.Errorf("with args in use, got command %q args %q; the extra args belong after the args", got.Command, got.Args)
	}
}

// A parent that names its token volume keeps it in its checkpoint, as a
// copy of a TokenRequest token of its service account; without the
// annotation the token is dropped with its volume.
func TestSanitizeKeepsTheNamedTokenVolume(t *testing.T) {
	pod := func(annotated bool) *corev1.Pod {
		p := checkpointtest.ParentPod("pod-checkpointer-abcde")
		p.Spec.ServiceAccountName = "pod-checkpointer"
		if annotated {
			p.Annotations[checkpoint.TokenVolumeAnnotation] = "token"
		}
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3600))}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		}}}})
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "token", MountPath: "/var/run/secrets/pod-checkpointer"})
		return p
	}
	cp, copies, err := checkpoint.Sanitize(pod(true), "/etc/kubernetes/checkpoint-secrets")
	if err != nil {
		t.Fatal(err)
	}
	var token *checkpoint.VolumeCopy
	for i := range copies {
		if copies[i].Volume == "token" {
			token = &copies[i]
		}
	}
	if token == nil || len(token.Sources) != 2 || token.Sources[0].Kind != checkpoint.TokenKind || token.Sources[0].Name != "pod-checkpointer" ||
		token.Sources[0].Items[0].Path != "token" || token.Sources[1].Name != "kube-root-ca.crt" {
		t.Fatalf("token volume copy = %+v", token)
	}
	files, err := checkpoint.Project(*token, map[string]map[string][]byte{
		checkpoint.TokenKind + "/pod-checkpointer": {checkpoint.TokenKey: []byte("a.b.c")}, "ConfigMap/kube-root-ca.crt": {"ca.crt": []byte("ca")},
	})
	if err != nil || string(files["token"].Data) != "a.b.c" || string(files["ca.crt"].Data) != "ca" {
		t.Fatalf("projected %v, %v", files, err)
	}
	if !mounts(cp, "token") {
		t.Error("the checkpoint lost the token mount")
	}
	if bad := checkpointtest.Inadmissible(cp); len(bad) > 0 {
		t.Fatalf("inadmissible: %v", bad)
	}

	cp, copies, err = checkpoint.Sanitize(pod(false), "/etc/kubernetes/checkpoint-secrets")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range copies {
		if c.Volume == "token" {
			t.Error("an unnamed token volume was copied")
		}
	}
	if mounts(cp, "token") {
		t.Error("an unnamed token volume is still mounted")
	}
}

func mounts(p *corev1.Pod, volume string) bool {
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		if m.Name == volume {
			return true
		}
	}
	return false
}
