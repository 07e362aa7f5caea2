package render

import (
	"crypto/x509"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// addEtcdMembers writes each member's server and peer certificates, signed
// by the etcd CA that also signs the API server's client certificate, and
// its static pod. etcd stays static, as after bootstrap.
func (a *assetList) addEtcdMembers(c *Config, etcdCA *pki.KeyPair, now time.Time) error {
	var initial []string
	for _, m := range c.EtcdMembers {
		initial = append(initial, m.Name+"="+m.PeerURL())
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, m := range c.EtcdMembers {
		ip := net.IP(m.IP.AsSlice())
		for _, cert := range []struct {
			file string
			cfg  pki.CertConfig
		}{
			{"server", pki.CertConfig{CommonName: m.Name, DNSNames: []string{m.Name, "localhost"}, IPs: []net.IP{ip, net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Usages: both}},
			{"peer", pki.CertConfig{CommonName: m.Name, DNSNames: []string{m.Name}, IPs: []net.IP{ip}, Usages: both}},
		} {
			kp, err := etcdCA.Issue(c.KeyAlgorithm, cert.cfg, now)
			if err != nil {
				return err
			}
			if err := a.addPair(kp, EtcdMemberTLS(m.Name, cert.file+".crt"), EtcdMemberTLS(m.Name, cert.file+".key")); err != nil {
				return err
			}
		}
		pod, err := yaml.Marshal(etcdPod(c, m, strings.Join(initial, ",")))
		if err != nil {
			return err
		}
		a.add(EtcdManifest(m.Name), pod, PublicMode)
	}
	return nil
}

// etcdPod is a member's static pod, with kubeadm's file names under
// /etc/kubernetes/pki/etcd: ca.crt, server.{crt,key} and peer.{crt,key}.
func etcdPod(c *Config, m EtcdMember, initialCluster string) *corev1.Pod {
	pki := func(f string) string { return NodeEtcdPKIDir + "/" + f }
	client := m.ClientURL().String()
	hostPath := func(name, path string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
	}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "etcd", Namespace: kube.Namespace, Labels: map[string]string{"tier": "control-plane", "component": "etcd"}},
		Spec: corev1.PodSpec{
			HostNetwork:       true,
			PriorityClassName: "system-node-critical",
			Containers: []corev1.Container{{
				Name:            "etcd",
				Image:           c.Images.Etcd,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{
					"etcd",
					"--name=" + m.Name,
					"--data-dir=" + NodeEtcdDataDir,
					"--initial-cluster=" + initialCluster,
					"--initial-cluster-state=new",
					"--initial-cluster-token=selfhost",
					"--initial-advertise-peer-urls=" + m.PeerURL(),
					"--listen-peer-urls=" + m.PeerURL(),
					"--advertise-client-urls=" + client,
					"--listen-client-urls=https://127.0.0.1:2379," + client,
					"--listen-metrics-urls=http://127.0.0.1:2381",
					"--client-cert-auth=true",
					"--trusted-ca-file=" + pki("ca.crt"),
					"--cert-file=" + pki("server.crt"),
					"--key-file=" + pki("server.key"),
					"--peer-client-cert-auth=true",
					"--peer-trusted-ca-file=" + pki("ca.crt"),
					"--peer-cert-file=" + pki("peer.crt"),
					"--peer-key-file=" + pki("peer.key"),
					"--snapshot-count=10000",
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "etcd-data", MountPath: NodeEtcdDataDir},
					{Name: "etcd-certs", MountPath: NodeEtcdPKIDir, ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				hostPath("etcd-data", NodeEtcdDataDir, corev1.HostPathDirectoryOrCreate),
				hostPath("etcd-certs", NodeEtcdPKIDir, corev1.HostPathDirectory),
			},
		},
	}
}

// EtcdMemberFiles maps a member's assets to where its node keeps them.
func EtcdMemberFiles(member string) map[string]string {
	files := map[string]string{EtcdCACert: NodeEtcdPKIDir + "/ca.crt", EtcdManifest(member): NodeStaticPodDir + "/etcd.yaml"}
	for _, f := range []string{"server.crt", "server.key", "peer.crt", "peer.key"} {
		files[EtcdMemberTLS(member, f)] = NodeEtcdPKIDir + "/" + f
	}
	return files
}
