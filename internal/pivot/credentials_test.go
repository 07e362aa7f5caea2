package pivot

import (
	"context"
	"crypto/x509"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

func TestMountCertsSecretKeepsEveryFlagAndSurvivesACheckpoint(t *testing.T) {
	mirror := loadMirror(t)
	tmpl, err := SelfHostedTemplate("kube-apiserver", mirror)
	if err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(tmpl.Spec.Containers[0].Command)
	if err := MountCertsSecret(&tmpl, APIServerSecret); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tmpl.Spec.Containers[0].Command, before) {
		t.Errorf("flags changed:\n%v\n%v", before, tmpl.Spec.Containers[0].Command)
	}
	var certs *corev1.Volume
	for i, v := range tmpl.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == kubeadmPKI {
			t.Errorf("%s still comes from the node", kubeadmPKI)
		}
		if v.Name == "k8s-certs" {
			certs = &tmpl.Spec.Volumes[i]
		}
	}
	if certs == nil || certs.Secret == nil || certs.Secret.SecretName != APIServerSecret {
		t.Fatalf("k8s-certs is %+v, want Secret %s", certs, APIServerSecret)
	}
	want := map[string]string{
		"apiserver-etcd-client.crt": "apiserver-etcd-client.crt", "apiserver-etcd-client.key": "apiserver-etcd-client.key",
		"apiserver.crt": "apiserver.crt", "apiserver.key": "apiserver.key", "ca.crt": "ca.crt",
		"etcd-ca.crt": "etcd/ca.crt", "sa.key": "sa.key", "sa.pub": "sa.pub",
	}
	got := map[string]string{}
	for _, it := range certs.Secret.Items {
		got[it.Key] = it.Path
	}
	if !maps.Equal(got, want) {
		t.Errorf("items %v, want %v", got, want)
	}
	// The checkpoint lays the Secret out where the flags look.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-x", Namespace: kube.Namespace, Annotations: tmpl.Annotations}, Spec: tmpl.Spec}
	_, copies, err := checkpoint.Sanitize(pod, "/etc/kubernetes/checkpoint-secrets")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{}
	for k := range want {
		data[k] = []byte(k)
	}
	for _, vc := range copies {
		if vc.Volume != "k8s-certs" {
			continue
		}
		files, err := checkpoint.Project(vc, map[string]map[string][]byte{"Secret/" + APIServerSecret: data})
		if err != nil {
			t.Fatal(err)
		}
		for _, arg := range before {
			if _, v, _ := strings.Cut(arg, "="); strings.HasPrefix(v, kubeadmPKI+"/") {
				if _, ok := files[strings.TrimPrefix(v, kubeadmPKI+"/")]; !ok {
					t.Errorf("the checkpoint has no file for %s", arg)
				}
			}
		}
		return
	}
	t.Fatal("the checkpoint copies no k8s-certs volume")
}

func TestMountCertsSecretRefusesAnotherLayout(t *testing.T) {
	tmpl, err := SelfHostedTemplate("kube-apiserver", loadMirror(t))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Spec.Volumes = tmpl.Spec.Volumes[:1] // /etc/ssl/certs only
	if err := MountCertsSecret(&tmpl, APIServerSecret); err == nil || !strings.Contains(err.Error(), "no hostPath volume of /etc/kubernetes/pki") {
		t.Errorf("got %v", err)
	}
}

// kubeadmPKIFor issues a CA and kubeadm's serving certificate for one node.
func kubeadmPKIFor(t *testing.T, now time.Time) (*pki.KeyPair, *pki.KeyPair) {
	t.Helper()
	ca, err := pki.NewCA(pki.RSA2048, "kubernetes", now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.RSA2048, pki.CertConfig{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"cp1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost", "selfhost-external-load-balancer"},
		IPs:        []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("172.18.0.3"), net.ParseIP("127.0.0.1")},
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca, leaf
}

func kubeadmSecret(kp *pki.KeyPair) *corev1.Secret {
	return &corev1.Secret{Data: map[string][]byte{servingCert: pki.EncodeCert(kp.Cert)}}
}

func TestStoredCredentialsAreDoneUntilTheControlPlaneChanges(t *testing.T) {
	now := time.Now()
	ca, _ := kubeadmPKIFor(t, now)
	node := func(name, ip string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{kube.ControlPlaneLabel: ""}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}}}
	}
	local := cluster.Config{ClusterDomain: cluster.DefaultDomain}
	serving, err := ca.Issue(pki.ECDSAP256, pki.CertConfig{CommonName: "kube-apiserver", DNSNames: append(local.APIServerNames(), "cp1", "cp2"),
		IPs: []net.IP{net.ParseIP("172.18.0.3"), net.ParseIP("172.18.0.4")}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, now)
	if err != nil {
		t.Fatal(err)
	}
	secret := kubeadmSecret(serving)
	secret.ObjectMeta = metav1.ObjectMeta{Name: APIServerSecret, Namespace: kube.Namespace}
	// A client certificate 20 days from expiry, as kubeadm's one-year ones get.
	expiring, err := ca.Issue(pki.RSA2048, pki.CertConfig{CommonName: "kube-apiserver-etcd-client", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, now.Add(20*24*time.Hour-pki.LeafValidity))
	if err != nil {
		t.Fatal(err)
	}
	nearExpiry := secret.DeepCopy()
	nearExpiry.Data["apiserver-etcd-client.crt"] = pki.EncodeCert(expiring.Cert)
	action := &storeAPIServerCredentials{}
	both := []runtime.Object{secret, node("cp1", "172.18.0.3"), node("cp2", "172.18.0.4")}
	for _, tc := range []struct {
		name   string
		objs   []runtime.Object
		domain string
		want   bool
	}{
		{"no Secret", []runtime.Object{node("cp1", "172.18.0.3")}, cluster.DefaultDomain, false},
		{"covers every node", both, cluster.DefaultDomain, true},
		{"a node joined", append(both, node("cp3", "172.18.0.5")), cluster.DefaultDomain, false},
		{"the cluster's DNS domain is another", both, "corp.internal", false},
		{"a client certificate expires within 30 days", []runtime.Object{nearExpiry, node("cp1", "172.18.0.3"), node("cp2", "172.18.0.4")}, cluster.DefaultDomain, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Context{Client: fake.NewClientset(tc.objs...), Cluster: &Cluster{Config: cluster.Config{ClusterDomain: tc.domain}}}
			done, err := action.Done(context.Background(), c)
			if err != nil || done != tc.want {
				t.Errorf("Done = %v, %v; want %v", done, err, tc.want)
			}
		})
	}
}

// Before the pivot the flags come from a static pod; after it, from the
// DaemonSet, so a rerun can still re-issue the certificate.
func TestCredentialsSource(t *testing.T) {
	ctx := context.Background()
	noStatic := func(objs []runtime.Object) []runtime.Object {
		var out []runtime.Object
		for _, o := range objs {
			if p, ok := o.(*corev1.Pod); !ok || p.Labels["component"] != "kube-apiserver" {
				out = append(out, o)
			}
		}
		return out
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: kube.Namespace},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "from-daemonset"}}}}}}
	for _, tc := range []struct {
		name       string
		mutate     func([]runtime.Object) []runtime.Object
		node, from string
		err        string
	}{
		{"a static pod is left", nil, "cp1", "kube-apiserver", ""},
		{"pivoted", func(objs []runtime.Object) []runtime.Object { return append(noStatic(objs), ds) }, "cp1", "from-daemonset", ""},
		{"neither", noStatic, "", "", "no static kube-apiserver is left to copy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := kubeadmCluster(t, tc.mutate)
			cl, err := Discover(ctx, client)
			if err != nil {
				t.Fatal(err)
			}
			node, container, err := credentialsSource(ctx, &Context{Client: client, Cluster: cl})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("got %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || node != tc.node || container.Name != tc.from {
				t.Errorf("got %s, %+v, %v; want %s and the container of %s", node, container, err, tc.node, tc.from)
			}
		})
	}
}
