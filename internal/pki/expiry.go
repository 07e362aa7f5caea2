package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Expiry is one certificate and when it stops being valid.
type Expiry struct {
	Name     string // where it is, e.g. the Secret key apiserver-etcd-client.crt
	Subject  string
	CA       bool
	NotAfter time.Time
}

func (e Expiry) String() string {
	return fmt.Sprintf("%s (%s) expires on %s", e.Name, e.Subject, e.NotAfter.UTC().Format(time.DateOnly))
}

// Expiries lists every certificate in the PEM values of data whose key ends
// in ".crt", soonest first. A value that holds no certificate is an error.
func Expiries(data map[string][]byte) ([]Expiry, error) {
	var out []Expiry
	for name, value := range data {
		if !strings.HasSuffix(name, ".crt") {
			continue
		}
		found := false
		for rest := value; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			found = true
			out = append(out, Expiry{Name: name, Subject: cert.Subject.CommonName, CA: cert.IsCA, NotAfter: cert.NotAfter})
		}
		if !found {
			return nil, fmt.Errorf("%s: %w", name, errors.New("no PEM certificate"))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NotAfter.Equal(out[j].NotAfter) {
			return out[i].NotAfter.Before(out[j].NotAfter)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ParsePair decodes a PEM certificate and its key and checks that they belong together.
func ParsePair(certPEM, keyPEM []byte) (*KeyPair, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("the key does not match the certificate")
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// KeyAlgorithmOf names the algorithm of an existing key, so a renewed
// certificate keeps its predecessor's kind of key.
func KeyAlgorithmOf(k crypto.Signer) KeyAlgorithm {
	if r, ok := k.(*rsa.PrivateKey); ok {
		if r.N.BitLen() >= 4096 {
			return RSA4096
		}
		return RSA2048
	}
	return ECDSAP256
}
