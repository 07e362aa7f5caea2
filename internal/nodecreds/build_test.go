package nodecreds

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

const day = 24 * time.Hour

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// kubeadmNode writes a kubeadm-shaped pki directory: three CAs, the API
// server's serving certificate for one node, its three client certificates
// (the etcd one 10 days and the front-proxy one 5 days from expiry) and the
// service-account keys. It returns the directory and the Secret items.
func kubeadmNode(t *testing.T) (string, []Item) {
	t.Helper()
	dir := t.TempDir()
	write := func(path string, b []byte) {
		t.Helper()
		full := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair := func(name string, kp *pki.KeyPair) {
		t.Helper()
		key, err := pki.EncodeKey(kp.Key)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".crt", pki.EncodeCert(kp.Cert))
		write(name+".key", key)
	}
	newCA := func(name, cn string) *pki.KeyPair {
		ca, err := pki.NewCA(pki.RSA2048, cn, now.Add(-400*day))
		if err != nil {
			t.Fatal(err)
		}
		pair(name, ca)
		return ca
	}
	issue := func(ca *pki.KeyPair, name string, cfg pki.CertConfig, left time.Duration) {
		kp, err := ca.Issue(pki.RSA2048, cfg, now.Add(left-pki.LeafValidity))
		if err != nil {
			t.Fatal(err)
		}
		pair(name, kp)
	}
	ca, etcdCA, proxyCA := newCA("ca", "kubernetes"), newCA("etcd/ca", "etcd-ca"), newCA("front-proxy-ca", "front-proxy-ca")
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	issue(ca, "apiserver", pki.CertConfig{CommonName: "kube-apiserver", DNSNames: []string{"cp-1", "kubernetes"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, 300*day)
	issue(ca, "apiserver-kubelet-client", pki.CertConfig{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"kubeadm:cluster-admins"}, Usages: client}, 300*day)
	issue(etcdCA, "apiserver-etcd-client", pki.CertConfig{CommonName: "kube-apiserver-etcd-client", Usages: client}, 10*day)
	issue(proxyCA, "front-proxy-client", pki.CertConfig{CommonName: "front-proxy-client", Usages: client}, 5*day)
	sa, err := pki.NewKey(pki.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	saKey, _ := pki.EncodeKey(sa)
	saPub, _ := pki.EncodePublicKey(sa.Public())
	write("sa.key", saKey)
	write("sa.pub", saPub)
	var items []Item
	for _, p := range []string{"apiserver.crt", "apiserver.key", "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
		"apiserver-kubelet-client.crt", "apiserver-kubelet-client.key", "ca.crt", "etcd/ca.crt", "front-proxy-ca.crt",
		"front-proxy-client.crt", "front-proxy-client.key", "sa.key", "sa.pub"} {
		items = append(items, Item{Key: strings.ReplaceAll(p, "/", "-"), Path: p})
	}
	return dir, items
}

func planFor(items []Item) Plan {
	return Plan{
		Items: items, ServingCert: "apiserver.crt", CAKey: "ca.crt",
		ServingDNS: []string{"cp-1", "cp-2", "cp-3", "kubernetes.default.svc.corp.internal"},
		ServingIPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2"), net.ParseIP("10.0.0.3")}, RenewBefore: 30 * day,
	}
}

func reader(dir string) ReadFile {
	return func(path string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, path)) }
}

func TestBuildReissuesWhatExpiresWithin30DaysFromTheNodesCAs(t *testing.T) {
	dir, items := kubeadmNode(t)
	plan := planFor(items)
	data, reissued, err := Build(plan, reader(dir), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range reissued {
		got[r.Key] = true
	}
	want := map[string]bool{"apiserver.crt": true, "apiserver-etcd-client.crt": true, "front-proxy-client.crt": true}
	if !maps.Equal(got, want) {
		t.Fatalf("reissued %v, want %v", reissued, want)
	}
	issuers := map[string]string{"apiserver.crt": "ca.crt", "apiserver-etcd-client.crt": "etcd-ca.crt", "front-proxy-client.crt": "front-proxy-ca.crt"}
	for crt, issuer := range issuers {
		kp, err := pki.ParsePair(data[crt], data[strings.TrimSuffix(crt, ".crt")+".key"])
		if err != nil {
			t.Fatalf("%s: %v", crt, err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(data[issuer])
		usage := x509.ExtKeyUsageClientAuth
		if crt == "apiserver.crt" {
			usage = x509.ExtKeyUsageServerAuth
		}
		if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s does not verify against %s: %v", crt, issuer, err)
		}
		if !kp.Cert.NotAfter.After(now.Add(300 * day)) {
			t.Errorf("%s still expires on %s", crt, kp.Cert.NotAfter)
		}
		if pki.KeyAlgorithmOf(kp.Key) != pki.RSA2048 {
			t.Errorf("%s: key kind changed to %s", crt, pki.KeyAlgorithmOf(kp.Key))
		}
	}
	serving, _ := pki.ParseCert(data["apiserver.crt"])
	for _, n := range plan.ServingDNS {
		if err := serving.VerifyHostname(n); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	for _, name := range []string{"apiserver-kubelet-client.crt", "sa.key", "etcd-ca.crt"} {
		node, _ := os.ReadFile(filepath.Join(dir, items[indexOf(items, name)].Path))
		if !bytes.Equal(data[name], node) {
			t.Errorf("%s was changed; it is good as the node has it", name)
		}
	}
	for _, caKey := range []string{"ca.key", "etcd-ca.key", "front-proxy-ca.key"} {
		if data[caKey] != nil {
			t.Errorf("the Secret holds %s", caKey)
		}
	}

	again, reissued, err := Build(plan, reader(dir), data, now.Add(day))
	if err != nil || len(reissued) > 0 || !maps.EqualFunc(again, data, bytes.Equal) {
		t.Fatalf("a rerun with the stored Secret changed it: reissued %v, err %v", reissued, err)
	}
	plan.ServingDNS = append(plan.ServingDNS, "cp-4")
	_, reissued, err = Build(plan, reader(dir), data, now)
	if err != nil || len(reissued) != 1 || reissued[0].Key != "apiserver.crt" || reissued[0].Why != "it does not name cp-4" {
		t.Fatalf("a new control-plane node: reissued %v, err %v", reissued, err)
	}
}

func indexOf(items []Item, key string) int {
	for i, it := range items {
		if it.Key == key {
			return i
		}
	}
	return -1
}

type fakeStore struct {
	stored   map[string][]byte
	getErrs  []error // returned one per Get, then nil
	gets     int
	applied  map[string][]byte
	applyErr error
}

func (s *fakeStore) Get(context.Context) (map[string][]byte, error) {
	s.gets++
	if len(s.getErrs) > 0 {
		err := s.getErrs[0]
		s.getErrs = s.getErrs[1:]
		return nil, err
	}
	return s.stored, nil
}
func (s *fakeStore) Apply(_ context.Context, d map[string][]byte) error {
	s.applied = d
	return s.applyErr
}

// holdsKeyMaterial finds PEM blocks, in clear or base64-encoded.
func holdsKeyMaterial(s string) bool {
	return strings.Contains(s, "-----BEGIN") || strings.Contains(s, base64.StdEncoding.EncodeToString([]byte("-----BEGIN"))[:12])
}

func TestNoKeyInTheLogOrAnyError(t *testing.T) {
	pemStatus := &apierrors.StatusError{ErrStatus: metav1.Status{Code: 422, Reason: metav1.StatusReasonInvalid,
		Message: `Secret "kube-apiserver" is invalid: data: -----BEGIN RSA PRIVATE KEY----- LS0tLS1CRUdJTiBSU0Eg`}}
	cases := map[string]func(dir string, c *Config, s *fakeStore){
		"success": func(string, *Config, *fakeStore) {},
		"the API server refuses the write, quoting it": func(_ string, _ *Config, s *fakeStore) {
			s.applyErr = sanitized(pemStatus, "store Secret kube-system/kube-apiserver")
		},
		"a CA key is missing": func(dir string, _ *Config, _ *fakeStore) { os.Remove(filepath.Join(dir, "etcd/ca.key")) },
		"a CA key is not a key": func(dir string, _ *Config, _ *fakeStore) {
			os.WriteFile(filepath.Join(dir, "front-proxy-ca.key"), []byte("-----BEGIN GARBAGE-----\nAAAA\n-----END GARBAGE-----\n"), 0o600)
		},
		"a key does not match its certificate": func(dir string, _ *Config, _ *fakeStore) {
			key, _ := os.ReadFile(filepath.Join(dir, "sa.key"))
			os.WriteFile(filepath.Join(dir, "apiserver-etcd-client.key"), key, 0o600)
		},
		"a file is missing": func(dir string, _ *Config, _ *fakeStore) { os.Remove(filepath.Join(dir, "sa.key")) },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			dir, items := kubeadmNode(t)
			c := Config{PKIDir: dir, Namespace: "kube-system", Secret: "kube-apiserver", Plan: planFor(items)}
			store := &fakeStore{}
			breakIt(dir, &c, store)
			var log bytes.Buffer
			err := Run(context.Background(), c, store, slog.New(slog.NewJSONHandler(&log, nil)), now)
			if (err == nil) != (name == "success") {
				t.Fatalf("err = %v", err)
			}
			out := log.String()
			if err != nil {
				out += err.Error()
			}
			if holdsKeyMaterial(out) {
				t.Fatalf("key material in the output: %s", out)
			}
			if name == "success" && (store.applied["apiserver.key"] == nil || !strings.Contains(out, "apiserver-etcd-client.crt")) {
				t.Fatalf("nothing stored or the renewal not named: %s", out)
			}
		})
	}
}

// The grant made just before the agent starts may reach an API server after
// the agent's first request: a refusal is retried, an invalid write is not.
func TestARefusalIsRetriedAndAnInvalidWriteIsNot(t *testing.T) {
	dir, items := kubeadmNode(t)
	c := Config{PKIDir: dir, Namespace: "kube-system", Secret: "kube-apiserver", Plan: planFor(items)}
	store := &fakeStore{getErrs: []error{apierrors.NewForbidden(corev1.Resource("secrets"), "kube-apiserver", errors.New("RBAC: not yet"))}}
	if err := Run(context.Background(), c, store, slog.New(slog.DiscardHandler), now); err != nil || store.gets != 2 || store.applied == nil {
		t.Fatalf("err %v after %d reads", err, store.gets)
	}
	store = &fakeStore{applyErr: sanitized(apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Secret").GroupKind(), "kube-apiserver", nil), "store Secret")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Run(ctx, c, store, slog.New(slog.DiscardHandler), now); !apierrors.IsInvalid(err) || ctx.Err() != nil {
		t.Fatalf("an invalid write: %v (retried until %v)", err, ctx.Err())
	}
}
