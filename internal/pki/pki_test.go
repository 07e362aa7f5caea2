package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssueChainsToCA(t *testing.T) {
	now := time.Now()
	for _, alg := range []KeyAlgorithm{ECDSAP256, RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			ca, err := NewCA(alg, "test-ca", now)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.Issue(alg, CertConfig{CommonName: "leaf", DNSNames: []string{"a.example"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, now)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "a.example"}); err != nil {
				t.Fatalf("leaf does not verify against its CA: %v", err)
			}
			if leaf.Cert.IsCA {
				t.Error("leaf certificate claims to be a CA")
			}
			if leaf.Cert.NotAfter.After(ca.Cert.NotAfter) {
				t.Error("leaf outlives its CA")
			}
			switch alg {
			case ECDSAP256:
				if _, ok := leaf.Key.(*ecdsa.PrivateKey); !ok {
					t.Errorf("key is %T, want ECDSA", leaf.Key)
				}
			case RSA2048:
				if k, ok := leaf.Key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
					t.Errorf("key is %T, want RSA 2048", leaf.Key)
				}
			}
		})
	}
}

func TestParseKeyAlgorithm(t *testing.T) {
	if a, err := ParseKeyAlgorithm("rsa-4096"); err != nil || a != RSA4096 {
		t.Fatalf("rsa-4096: got %q, %v", a, err)
	}
	if _, err := ParseKeyAlgorithm("dsa"); err == nil || !strings.Contains(err.Error(), "ecdsa-p256") {
		t.Fatalf("dsa: want an error listing the valid algorithms, got %v", err)
	}
}

func writePair(t *testing.T, dir, name string, kp *KeyPair) (string, string) {
	t.Helper()
	key, err := EncodeKey(kp.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(c, EncodeCert(kp.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, k
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	a, _ := NewCA(ECDSAP256, "a", now)
	b, _ := NewCA(ECDSAP256, "b", now)
	leaf, _ := a.Issue(ECDSAP256, CertConfig{CommonName: "leaf"}, now)
	aCert, aKey := writePair(t, dir, "a", a)
	_, bKey := writePair(t, dir, "b", b)
	leafCert, leafKey := writePair(t, dir, "leaf", leaf)

	got, err := LoadCA(aCert, aKey)
	if err != nil {
		t.Fatalf("matching CA: %v", err)
	}
	if !got.Cert.Equal(a.Cert) {
		t.Error("loaded a different certificate")
	}
	if _, err := LoadCA(aCert, bKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: want 'does not match', got %v", err)
	}
	if _, err := LoadCA(leafCert, leafKey); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: want 'not a CA', got %v", err)
	}
	if _, err := LoadCA(filepath.Join(dir, "missing.crt"), aKey); err == nil {
		t.Error("missing file: want an error")
	}
}
