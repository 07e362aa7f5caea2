package render

import (
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// kubeletConfig is a KubeletConfiguration for one role. Control-plane
// kubelets run static pods and register with the control-plane taint; the
// label is set by start, since a kubelet may not set node-role labels.
func kubeletConfig(c *Config, controlPlane bool) ([]byte, error) {
	cfg := kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeletv1beta1.SchemeGroupVersion.String(), Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: NodeCACert},
		},
		Authorization:            kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		CgroupDriver:             "systemd",
		ClusterDNS:               []string{c.DNSServiceIP().String()},
		ClusterDomain:            c.ClusterDomain,
		ContainerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
		RotateCertificates:       true,
		StaticPodPath:            NodeStaticPodDir,
	}
	if controlPlane {
		cfg.RegisterWithTaints = []corev1.Taint{{Key: kube.ControlPlaneLabel, Effect: corev1.TaintEffectNoSchedule}}
	}
	return yaml.Marshal(cfg)
}

// kubeletDropIn starts the kubelet with the rendered files; it sorts after
// the packages' 10-kubeadm.conf and replaces its command line.
const kubeletDropIn = `# kubectl-selfhost: the kubelet joins with its bootstrap kubeconfig (TLS bootstrapping).
[Service]
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet --config=` + NodeKubeletConfig + ` --bootstrap-kubeconfig=` + NodeBootstrapKubeconfig + ` --kubeconfig=` + NodeKubeletKubeconfig + ` $KUBELET_EXTRA_ARGS
`

func (a *assetList) addKubeletFiles(c *Config) error {
	for _, k := range []struct {
		name         string
		controlPlane bool
	}{{KubeletControlPlaneConfig, true}, {KubeletWorkerConfig, false}} {
		data, err := kubeletConfig(c, k.controlPlane)
		if err != nil {
			return err
		}
		a.add(k.name, data, PublicMode)
	}
	a.add(KubeletDropIn, []byte(kubeletDropIn), PublicMode)
	return nil
}

// BootstrapToken is a kubelet's join credential: a bootstrap token, so no
// key ever goes to a node that joins.
type BootstrapToken struct {
	ID, Secret string
	Expires    time.Time // zero: until deleted
}

// String is the bearer token.
func (t BootstrapToken) String() string { return t.ID + "." + t.Secret }

// newBootstrapToken makes a token of kubeadm's form [a-z0-9]{6}.[a-z0-9]{16}.
func newBootstrapToken(ttl time.Duration, now time.Time) (BootstrapToken, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	random := func(n int) (string, error) {
		out := make([]byte, 0, n)
		b := make([]byte, 1)
		for len(out) < n {
			if _, err := rand.Read(b); err != nil {
				return "", fmt.Errorf("cannot make a bootstrap token: %w", err)
			}
			if int(b[0]) < 256/len(alphabet)*len(alphabet) { // no modulo bias
				out = append(out, alphabet[int(b[0])%len(alphabet)])
			}
		}
		return string(out), nil
	}
	id, err := random(6)
	if err != nil {
		return BootstrapToken{}, err
	}
	secret, err := random(16)
	if err != nil {
		return BootstrapToken{}, err
	}
	t := BootstrapToken{ID: id, Secret: secret}
	if ttl > 0 {
		t.Expires = now.Add(ttl).UTC()
	}
	return t, nil
}
