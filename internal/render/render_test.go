package render

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

func mustRender(t testing.TB, mutate func(*Input)) (*Config, map[string]Asset) {
	t.Helper()
	in := DefaultInput()
	in.APIServers = []string{"https://api.example.test:6443"}
	in.APIServerAltNames = []string{"DNS=lb.example.test", "IP=192.0.2.10", "203.0.113.7"}
	in.AppsNamespace = "apps"
	if mutate != nil {
		mutate(&in)
	}
	c, err := in.Parse()
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	list, err := Assets(c)
	if err != nil {
		t.Fatalf("Assets: %v", err)
	}
	m := map[string]Asset{}
	for _, a := range list {
		m[a.Name] = a
	}
	return c, m
}

func cert(t *testing.T, assets map[string]Asset, name string) *x509.Certificate {
	t.Helper()
	c, err := pki.ParseCert(assets[name].Data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// Every certificate verifies against its own CA, for the usage it is meant for.
func TestCertificatesChainToTheirCA(t *testing.T) {
	_, a := mustRender(t, nil)
	server := x509.ExtKeyUsageServerAuth
	client := x509.ExtKeyUsageClientAuth
	cases := []struct {
		cert, ca string
		usage    x509.ExtKeyUsage
		cn       string
		org      []string
	}{
		{APIServerCert, CACert, server, "kube-apiserver", nil},
		{APIServerKubeletClientCert, CACert, client, "kube-apiserver-kubelet-client", nil},
		{FrontProxyClientCert, FrontProxyCACert, client, "front-proxy-client", nil},
		{EtcdClientCert, EtcdCACert, client, "kube-apiserver-etcd-client", nil},
		{AdminCert, CACert, client, "kubernetes-admin", []string{"kubeadm:cluster-admins"}},
	}
	for _, tc := range cases {
		t.Run(tc.cert, func(t *testing.T) {
			leaf, ca := cert(t, a, tc.cert), cert(t, a, tc.ca)
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatalf("does not verify against %s: %v", tc.ca, err)
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != tc.usage {
				t.Errorf("ext key usages %v, want only %v", leaf.ExtKeyUsage, tc.usage)
			}
			if leaf.Subject.CommonName != tc.cn || !slices.Equal(leaf.Subject.Organization, tc.org) {
				t.Errorf("subject CN=%q O=%v, want CN=%q O=%v", leaf.Subject.CommonName, leaf.Subject.Organization, tc.cn, tc.org)
			}
			// A leaf of another CA must not verify: the CAs are distinct.
			other := CACert
			if tc.ca == CACert {
				other = FrontProxyCACert
			}
			foreign := x509.NewCertPool()
			foreign.AddCert(cert(t, a, other))
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: foreign, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err == nil {
				t.Errorf("also verifies against %s", other)
			}
			// The key file holds the key of this certificate.
			key, err := pki.ParseKey(a[strings.TrimSuffix(tc.cert, ".crt")+".key"].Data)
			if err != nil {
				t.Fatal(err)
			}
			if !publicKeyMatches(leaf, key.Public()) {
				t.Error("key file does not match the certificate")
			}
		})
	}
	for _, name := range []string{CACert, FrontProxyCACert, EtcdCACert} {
		if ca := cert(t, a, name); !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("%s is not a signing CA", name)
		}
	}
}

func publicKeyMatches(c *x509.Certificate, pub any) bool {
	a, _ := x509.MarshalPKIXPublicKey(c.PublicKey)
	b, _ := x509.MarshalPKIXPublicKey(pub)
	return bytes.Equal(a, b)
}

func TestAPIServerSANs(t *testing.T) {
	_, a := mustRender(t, func(in *Input) { in.ClusterDomain = "corp.internal" })
	c := cert(t, a, APIServerCert)
	for _, name := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.corp.internal", "api.example.test", "lb.example.test"} {
		if err := c.VerifyHostname(name); err != nil {
			t.Errorf("SAN %s: %v", name, err)
		}
	}
	for _, ip := range []string{"10.96.0.1", "192.0.2.10", "203.0.113.7"} {
		if !slices.ContainsFunc(c.IPAddresses, func(x net.IP) bool { return x.Equal(net.ParseIP(ip)) }) {
			t.Errorf("IP SAN %s missing from %v", ip, c.IPAddresses)
		}
	}
	if err := c.VerifyHostname("evil.example.test"); err == nil {
		t.Error("certificate is valid for a name it was never given")
	}
}

func TestSignsWithGivenCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA(pki.RSA2048, "corp-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.EncodeKey(ca.Key)
	os.WriteFile(filepath.Join(dir, "ca.crt"), pki.EncodeCert(ca.Cert), 0o644)
	os.WriteFile(filepath.Join(dir, "ca.key"), key, 0o600)
	_, a := mustRender(t, func(in *Input) {
		in.CACert, in.CAKey = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	})
	if got := cert(t, a, CACert); !got.Equal(ca.Cert) {
		t.Fatal("tls/ca.crt is not the given CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert(t, a, APIServerCert).Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Fatalf("apiserver.crt not signed by the given CA: %v", err)
	}
}

func TestKubeconfigsTrustTheCA(t *testing.T) {
	_, a := mustRender(t, nil)
	for _, name := range []string{AdminKubeconfig, KubeletKubeconfig} {
		cfg, err := clientcmd.Load(a[name].Data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rc.Host != "https://api.example.test:6443" {
			t.Errorf("%s: server %q", name, rc.Host)
		}
		if !bytes.Equal(rc.CAData, a[CACert].Data) {
			t.Errorf("%s: does not trust tls/ca.crt", name)
		}
		if a[name].Mode != PrivateMode {
			t.Errorf("%s: mode %o, want 0600 (it embeds a key)", name, a[name].Mode)
		}
	}
}

// decodeAll strictly decodes every YAML document into its typed object.
func decodeAll(t *testing.T, name string, data []byte) []runtime.Object {
	t.Helper()
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := apiregistrationv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := kubeletv1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufioReader(data))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: strict decode: %v\n%s", name, err, doc)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no objects", name)
	}
	return objs
}

func TestManifestsDecodeStrictly(t *testing.T) {
	_, a := mustRender(t, func(in *Input) {
		in.KubernetesVersion = "v1.36.4"
		in.CheckpointerImage = "example.test/checkpointer:v9"
	})
	want := []string{
		"bootstrap-manifests/bootstrap-apiserver.yaml", "bootstrap-manifests/bootstrap-controller-manager.yaml",
		"bootstrap-manifests/bootstrap-scheduler.yaml",
		"manifests/kube-apiserver.yaml", "manifests/kube-apiserver-secret.yaml",
		"manifests/kube-controller-manager.yaml", "manifests/kube-controller-manager-secret.yaml",
		"manifests/kube-controller-manager-disruption.yaml", "manifests/kube-scheduler.yaml",
		"manifests/kube-scheduler-disruption.yaml", "manifests/kube-proxy.yaml", "manifests/coredns.yaml",
		"manifests/kube-flannel.yaml", "manifests/metrics-server.yaml", "manifests/pod-checkpointer.yaml",
		"manifests/namespace.yaml",
	}
	for _, w := range want {
		if _, ok := a[w]; !ok {
			t.Errorf("missing %s", w)
		}
	}
	images := map[string][]string{} // asset -> images of its pods
	var pods []corev1.PodSpec
	for name, asset := range a {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, obj := range decodeAll(t, name, asset.Data) {
			checkSelector(t, name, obj)
			spec := podSpec(obj)
			if spec == nil {
				checkRBAC(t, name, obj)
				continue
			}
			pods = append(pods, *spec)
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				images[name] = append(images[name], c.Image)
				if c.ImagePullPolicy != corev1.PullIfNotPresent {
					t.Errorf("%s: container %s pulls %q; recovery must not need a registry", name, c.Name, c.ImagePullPolicy)
				}
			}
		}
	}
	for asset, img := range map[string]string{
		"manifests/kube-apiserver.yaml":                "registry.k8s.io/kube-apiserver:v1.36.4",
		"manifests/kube-controller-manager.yaml":       "registry.k8s.io/kube-controller-manager:v1.36.4",
		"manifests/kube-scheduler.yaml":                "registry.k8s.io/kube-scheduler:v1.36.4",
		"manifests/kube-proxy.yaml":                    "registry.k8s.io/kube-proxy:v1.36.4",
		"bootstrap-manifests/bootstrap-apiserver.yaml": "registry.k8s.io/kube-apiserver:v1.36.4",
		"manifests/pod-checkpointer.yaml":              "example.test/checkpointer:v9",
	} {
		if !slices.Contains(images[asset], img) {
			t.Errorf("%s: images %v, want %s", asset, images[asset], img)
		}
	}
	if len(pods) < 10 {
		t.Errorf("only %d pod specs rendered", len(pods))
	}
}

// checkSelector does what the API server's validation does: a workload's
// selector must match its own pod template.
func checkSelector(t *testing.T, name string, obj runtime.Object) {
	var sel *metav1.LabelSelector
	var podLabels map[string]string
	switch o := obj.(type) {
	case *appsv1.DaemonSet:
		sel, podLabels = o.Spec.Selector, o.Spec.Template.Labels
	case *appsv1.Deployment:
		sel, podLabels = o.Spec.Selector, o.Spec.Template.Labels
	default:
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s: selector %v does not select its own pods %v", name, sel, podLabels)
	}
}

func podSpec(obj runtime.Object) *corev1.PodSpec {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	}
	return nil
}

// checkRBAC refuses any service account bound to cluster-admin.
func checkRBAC(t *testing.T, name string, obj runtime.Object) {
	var ref rbacv1.RoleRef
	var subjects []rbacv1.Subject
	switch o := obj.(type) {
	case *rbacv1.ClusterRoleBinding:
		ref, subjects = o.RoleRef, o.Subjects
	case *rbacv1.RoleBinding:
		ref, subjects = o.RoleRef, o.Subjects
	default:
		return
	}
	if ref.Name != "cluster-admin" {
		return
	}
	for _, s := range subjects {
		if s.Kind == rbacv1.ServiceAccountKind {
			t.Errorf("%s: service account %s/%s is bound to cluster-admin", name, s.Namespace, s.Name)
		}
	}
}

func TestAPIServerDaemonSet(t *testing.T) {
	_, a := mustRender(t, nil)
	objs := decodeAll(t, "kube-apiserver", a["manifests/kube-apiserver.yaml"].Data)
	ds := objs[0].(*appsv1.DaemonSet)
	if ds.Spec.Template.Annotations["checkpointer.selfhost.dev/checkpoint"] != "true" {
		t.Error("API server pods are not marked for checkpointing")
	}
	c := ds.Spec.Template.Spec.Containers[0]
	if len(c.Ports) != 0 {
		t.Error("a declared port would stop the pod from binding beside a static or checkpointed API server")
	}
	for _, flag := range []string{"--permit-port-sharing=true", "--advertise-address=$(HOST_IP)", "--etcd-servers=https://127.0.0.1:2379", "--service-cluster-ip-range=10.96.0.0/12"} {
		if !slices.Contains(c.Command, flag) {
			t.Errorf("missing %s", flag)
		}
	}
	secret := decodeAll(t, "secret", a["manifests/kube-apiserver-secret.yaml"].Data)[0].(*corev1.Secret)
	if !bytes.Equal(secret.Data["apiserver.crt"], a[APIServerCert].Data) || !bytes.Equal(secret.Data["service-account.pub"], a[ServiceAccountPub].Data) {
		t.Error("the secret does not carry the rendered certificates")
	}
	if _, ok := secret.Data["ca.key"]; ok {
		t.Error("the API server secret carries the CA key; only the controller manager needs it")
	}
}

// holdsKey reports whether a file carries a private key: a PEM block, or a
// base64 token (a Secret's data, a kubeconfig's key-data) that decodes to one.
func holdsKey(data []byte) bool {
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return true
	}
	for _, tok := range regexp.MustCompile(`[A-Za-z0-9+/]{40,}={0,2}`).FindAll(data, -1) {
		if dec, err := base64.StdEncoding.DecodeString(string(tok)); err == nil && holdsKey(dec) {
			return true
		}
	}
	return false
}

// holdsToken reports whether data carries a bootstrap token's secret.
func holdsToken(data []byte) bool {
	return regexp.MustCompile(`(token-secret: "?|token: )[a-z0-9]{6}`).Match(data)
}

// Every file that carries a private key or a token, however it is encoded, is 0600 on
// disk; the others are not hidden.
func TestKeyMaterialIsOwnerOnly(t *testing.T) {
	_, a := mustRender(t, nil)
	dir := filepath.Join(t.TempDir(), "assets")
	if err := Write(dir, assetSlice(t, a), false); err != nil {
		t.Fatal(err)
	}
	keys := 0
	for name, asset := range a {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(PublicMode)
		if holdsKey(asset.Data) || holdsToken(asset.Data) {
			keys++
			want = PrivateMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", name, fi.Mode().Perm(), want)
		}
	}
	// The key files, both kubeconfigs that embed keys, and the two Secrets.
	if keys < 12 {
		t.Errorf("only %d files carry a key", keys)
	}
}

// A second render is refused without --force; with it the directory is
// replaced whole, and a render that fails halfway leaves it as it was.
func TestForceReplacesTheDirectoryWholeOrNotAtAll(t *testing.T) {
	_, a := mustRender(t, nil)
	list := assetSlice(t, a)
	dir := filepath.Join(t.TempDir(), "assets")
	if err := Write(dir, list, false); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, list, false); !errors.Is(err, ErrAssetDirNotEmpty) {
		t.Errorf("second write: want ErrAssetDirNotEmpty, got %v", err)
	}
	before := snapshot(t, dir)

	// Another render (new keys) that fails on its last file: auth/kubeconfig
	// is a file, so nothing can be written beneath it.
	_, other := mustRender(t, nil)
	broken := append(assetSlice(t, other), Asset{Name: "auth/kubeconfig/x", Data: []byte("x"), Mode: PublicMode})
	if err := Write(dir, broken, true); err == nil {
		t.Fatal("a render that cannot be written succeeded")
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Error("a failed --force render changed the asset directory")
	}

	_, again := mustRender(t, nil)
	os.WriteFile(filepath.Join(dir, "stale.txt"), []byte("left by hand"), 0o644)
	if err := Write(dir, assetSlice(t, again), true); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	if _, ok := after["stale.txt"]; ok {
		t.Error("--force kept a file the render does not write")
	}
	if after[CAKey] == before[CAKey] || after[CAKey] != string(again[CAKey].Data)+"|600" {
		t.Error("--force did not write the new render, with its modes")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".assets.*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func assetSlice(t *testing.T, a map[string]Asset) []Asset {
	t.Helper()
	list := make([]Asset, 0, len(a))
	for _, name := range slices.Sorted(maps.Keys(a)) {
		list = append(list, a[name])
	}
	return list
}

// snapshot maps each file under dir to its content and mode.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = fmt.Sprintf("%s|%o", data, fi.Mode().Perm())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func BenchmarkRenderECDSA(b *testing.B) {
	for b.Loop() {
		mustRender(b, nil)
	}
}

// Static etcd members: each has a server and a peer certificate of the etcd
// CA for its own address, and a static pod that names every member.
func TestEtcdMembers(t *testing.T) {
	members := []string{"cp1=10.0.0.11", "cp2=10.0.0.12", "cp3=10.0.0.13"}
	c, a := mustRender(t, func(in *Input) { in.EtcdMembers = members })
	roots := x509.NewCertPool()
	roots.AddCert(cert(t, a, EtcdCACert))
	for i, m := range c.EtcdMembers {
		for _, f := range []string{"server", "peer"} {
			leaf := cert(t, a, EtcdMemberTLS(m.Name, f+".crt"))
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("%s %s: %v", m.Name, f, err)
				}
			}
			if err := leaf.VerifyHostname(m.IP.String()); err != nil {
				t.Errorf("%s %s: %v", m.Name, f, err)
			}
			if key := a[EtcdMemberTLS(m.Name, f+".key")]; key.Mode != PrivateMode {
				t.Errorf("%s %s key: mode %o", m.Name, f, key.Mode)
			}
		}
		pod := decodeAll(t, m.Name, a[EtcdManifest(m.Name)].Data)[0].(*corev1.Pod)
		cmd := strings.Join(pod.Spec.Containers[0].Command, " ")
		for _, want := range []string{"--name=" + m.Name, "--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380", "--advertise-client-urls=https://" + m.IP.String() + ":2379"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("member %d: %s lacks %s", i, cmd, want)
			}
		}
		// The API server certificate names every control-plane node.
		if err := cert(t, a, APIServerCert).VerifyHostname(m.IP.String()); err != nil {
			t.Errorf("API server certificate: %v", err)
		}
	}
	if got := a[ManifestPath("bootstrap-apiserver.yaml")].Data; !bytes.Contains(got, []byte("--etcd-servers=https://10.0.0.11:2379,https://10.0.0.12:2379,https://10.0.0.13:2379")) {
		t.Errorf("the bootstrap API server does not use the members:\n%s", got)
	}
	for _, bad := range [][]string{{"cp1=10.0.0.11", "cp2=10.0.0.12"}, {"cp1=10.0.0.11", "cp1=10.0.0.12", "cp3=10.0.0.13"}, {"cp1"}, {"CP1=10.0.0.1"}} {
		in := DefaultInput()
		in.EtcdMembers = bad
		if _, err := in.Parse(); err == nil {
			t.Errorf("--etcd-members %v: accepted", bad)
		}
	}
	in := DefaultInput()
	in.EtcdMembers, in.EtcdServers = members, []string{"https://10.0.0.5:2379"}
	if _, err := in.Parse(); err == nil {
		t.Error("--etcd-members with --etcd-servers: accepted")
	}
}

// Kubelets join with a bootstrap token that the rendered Secret defines,
// so no key goes to a node that joins.
func TestKubeletsJoinWithTheRenderedToken(t *testing.T) {
	_, a := mustRender(t, func(in *Input) { in.BootstrapTokenTTL = time.Hour })
	cfg, err := clientcmd.Load(a[KubeletKubeconfig].Data)
	if err != nil {
		t.Fatal(err)
	}
	auth := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	if len(auth.ClientKeyData) > 0 || len(auth.ClientCertificateData) > 0 || !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(auth.Token) {
		t.Fatalf("kubelet kubeconfig: want only a bootstrap token, got token %q and a key of %d bytes", auth.Token, len(auth.ClientKeyData))
	}
	secret := decodeAll(t, "token", a[ManifestPath("kubelet-bootstrap-token.yaml")].Data)[0].(*corev1.Secret)
	id, sec, _ := strings.Cut(auth.Token, ".")
	if secret.Name != "bootstrap-token-"+id || secret.StringData["token-id"] != id || secret.StringData["token-secret"] != sec ||
		secret.Type != "bootstrap.kubernetes.io/token" || secret.StringData["usage-bootstrap-authentication"] != "true" {
		t.Errorf("the token Secret does not define the kubeconfig's token: %+v", secret)
	}
	exp, err := time.Parse(time.RFC3339, secret.StringData["expiration"])
	if err != nil || time.Until(exp) > time.Hour || time.Until(exp) < 50*time.Minute {
		t.Errorf("expiration %q, want in an hour", secret.StringData["expiration"])
	}
	if a[ManifestPath("kubelet-bootstrap-token.yaml")].Mode != PrivateMode {
		t.Error("the token Secret is not 0600")
	}
	for _, name := range []string{KubeletControlPlaneConfig, KubeletWorkerConfig} {
		var kc struct {
			Kind               string
			ClusterDNS         []string `json:"clusterDNS"`
			RegisterWithTaints []corev1.Taint
		}
		if err := yaml.Unmarshal(a[name].Data, &kc); err != nil || kc.Kind != "KubeletConfiguration" || !slices.Equal(kc.ClusterDNS, []string{"10.96.0.10"}) {
			t.Errorf("%s: %v %+v", name, err, kc)
		}
		if tainted := len(kc.RegisterWithTaints) == 1; tainted != (name == KubeletControlPlaneConfig) {
			t.Errorf("%s: taints %v", name, kc.RegisterWithTaints)
		}
	}
}
