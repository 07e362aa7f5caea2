// Package nodecreds runs on a control-plane node, in a short-lived pod that
// bootstrap starts: it reads kubeadm's pki directory, issues what the
// self-hosted API server needs, and stores it in Secret
// kube-system/kube-apiserver itself. Keys go from the node's files straight
// into the Secret: none passes through a log, an argument or the plugin, and
// the CA keys never leave the node.
package nodecreds

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// Item is one file of the pki directory stored under a Secret key.
type Item struct {
	Key  string // Secret key, e.g. etcd-ca.crt
	Path string // under the pki directory, e.g. etcd/ca.crt
}

// Plan says what the Secret must hold.
type Plan struct {
	Items []Item
	// ServingCert is the key of the serving certificate. It is issued anew,
	// like kubeadm's but naming every control-plane node, from the CA whose
	// certificate is under CAKey.
	ServingCert string
	CAKey       string
	// ServingDNS and ServingIPs are the names it must carry.
	ServingDNS []string
	ServingIPs []net.IP
	// RenewBefore is how close to expiry a leaf certificate may be before it
	// is reissued.
	RenewBefore time.Duration
}

// Reissued names a certificate that was issued anew, and why.
type Reissued struct {
	Key      string    `json:"key"`
	Why      string    `json:"why"`
	NotAfter time.Time `json:"notAfter"`
}

// ReadFile reads a file under the pki directory.
type ReadFile func(path string) ([]byte, error)

// Build computes the Secret's data from the node's files and the data the
// Secret already holds. A stored certificate that is still good is kept, so
// a rerun changes nothing; one that is missing, names too little, no longer
// chains to the node's CA or expires within RenewBefore is issued anew from
// the CA key on the node.
func Build(p Plan, read ReadFile, stored map[string][]byte, now time.Time) (map[string][]byte, []Reissued, error) {
	data := map[string][]byte{}
	for _, it := range p.Items {
		b, err := read(it.Path)
		if err != nil {
			return nil, nil, fileError(it.Path, err)
		}
		data[it.Key] = b
	}
	cas := authorities(data)
	var reissued []Reissued
	for _, crt := range leafPairs(p.Items, data) {
		key := strings.TrimSuffix(crt, ".crt") + ".key"
		good := func(certPEM, keyPEM []byte) string { return leafProblem(p, crt, certPEM, keyPEM, cas, now) }
		why := "the Secret does not hold it"
		if stored[crt] != nil {
			if why = good(stored[crt], stored[key]); why == "" {
				data[crt], data[key] = stored[crt], stored[key]
				continue
			}
		}
		if nodeWhy := good(data[crt], data[key]); nodeWhy == "" {
			continue
		} else if stored[crt] == nil {
			why = nodeWhy
		}
		kp, err := reissue(p, crt, data[crt], data[key], cas, read, now)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot reissue %s (%s): %w", crt, why, err)
		}
		data[crt] = pki.EncodeCert(kp.Cert)
		if data[key], err = pki.EncodeKey(kp.Key); err != nil {
			return nil, nil, err
		}
		reissued = append(reissued, Reissued{Key: crt, Why: why, NotAfter: kp.Cert.NotAfter})
	}
	return data, reissued, nil
}

// fileError names the file and the cause, never any content.
func fileError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing", path)
	}
	return fmt.Errorf("cannot read %s: %w", path, err)
}

// authority is a CA certificate and where its key is on the node.
type authority struct {
	cert    *x509.Certificate
	keyPath string
}

// authorities lists the CA certificates among the items; each one's key is
// beside it on the node, as kubeadm lays them out.
func authorities(data map[string][]byte) map[string]authority {
	out := map[string]authority{}
	for key, b := range data {
		if !strings.HasSuffix(key, ".crt") {
			continue
		}
		if cert, err := pki.ParseCert(b); err == nil && cert.IsCA {
			out[key] = authority{cert: cert}
		}
	}
	return out
}

// leafPairs lists the keys of the certificates that have their private key
// beside them in the Secret (x.crt and x.key), CAs left out.
func leafPairs(items []Item, data map[string][]byte) []string {
	var out []string
	for _, it := range items {
		crt, ok := strings.CutSuffix(it.Key, ".crt")
		if !ok || data[crt+".key"] == nil {
			continue
		}
		if cert, err := pki.ParseCert(data[it.Key]); err == nil && cert.IsCA {
			continue
		}
		out = append(out, it.Key)
	}
	sort.Strings(out)
	return out
}

// leafProblem says why a certificate and key cannot be stored as they are,
// or "" when they can.
func leafProblem(p Plan, crt string, certPEM, keyPEM []byte, cas map[string]authority, now time.Time) string {
	kp, err := pki.ParsePair(certPEM, keyPEM)
	if err != nil {
		return "it does not parse or its key does not match"
	}
	issuer := issuerOf(kp.Cert, cas)
	if issuer == "" {
		return "it is not signed by any CA of the node"
	}
	if now.Add(p.RenewBefore).After(kp.Cert.NotAfter) {
		return "it expires on " + kp.Cert.NotAfter.UTC().Format(time.DateOnly)
	}
	if crt != p.ServingCert {
		return ""
	}
	if issuer != p.CAKey {
		return "it is not signed by " + p.CAKey
	}
	for _, n := range p.ServingDNS {
		if !slices.Contains(kp.Cert.DNSNames, n) {
			return "it does not name " + n
		}
	}
	for _, ip := range p.ServingIPs {
		if !slices.ContainsFunc(kp.Cert.IPAddresses, ip.Equal) {
			return "it does not name " + ip.String()
		}
	}
	return ""
}

// issuerOf names the CA that signed cert, or "".
func issuerOf(cert *x509.Certificate, cas map[string]authority) string {
	names := make([]string, 0, len(cas))
	for name := range cas {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if cert.CheckSignatureFrom(cas[name].cert) == nil {
			return name
		}
	}
	return ""
}

// reissue issues a certificate like the node's one, from the CA that signed
// it (the serving certificate: from CAKey, with every name it must carry).
func reissue(p Plan, crt string, certPEM, keyPEM []byte, cas map[string]authority, read ReadFile, now time.Time) (*pki.KeyPair, error) {
	orig, err := pki.ParsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the node's %s: %w", crt, err)
	}
	issuer := issuerOf(orig.Cert, cas)
	if crt == p.ServingCert {
		issuer = p.CAKey
	}
	if _, ok := cas[issuer]; !ok {
		return nil, errors.New("no CA of the node signed it")
	}
	keyPath := caKeyPath(p.Items, issuer)
	caKey, err := read(keyPath)
	if err != nil {
		return nil, fileError(keyPath, err)
	}
	ca, err := pki.ParseCA(pki.EncodeCert(cas[issuer].cert), caKey)
	if err != nil {
		return nil, fmt.Errorf("the CA of %s: %w", issuer, err)
	}
	cfg := pki.CertConfig{
		CommonName: orig.Cert.Subject.CommonName, Organization: orig.Cert.Subject.Organization,
		DNSNames: slices.Clone(orig.Cert.DNSNames), IPs: slices.Clone(orig.Cert.IPAddresses), Usages: orig.Cert.ExtKeyUsage,
	}
	if crt == p.ServingCert {
		for _, n := range p.ServingDNS {
			if !slices.Contains(cfg.DNSNames, n) {
				cfg.DNSNames = append(cfg.DNSNames, n)
			}
		}
		for _, ip := range p.ServingIPs {
			if !slices.ContainsFunc(cfg.IPs, ip.Equal) {
				cfg.IPs = append(cfg.IPs, ip)
			}
		}
	}
	return ca.Issue(pki.KeyAlgorithmOf(orig.Key), cfg, now)
}

// caKeyPath is where the key of the CA stored under key is on the node:
// beside its certificate (ca.crt -> ca.key, etcd/ca.crt -> etcd/ca.key).
func caKeyPath(items []Item, key string) string {
	for _, it := range items {
		if it.Key == key {
			return strings.TrimSuffix(it.Path, ".crt") + ".key"
		}
	}
	return strings.TrimSuffix(key, ".crt") + ".key"
}
