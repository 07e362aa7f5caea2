// Package render writes every asset of a self-hosted control plane offline,
// in bootkube's layout: auth/, tls/, bootstrap-manifests/ and manifests/.
// All assets are made in memory first, so a failure writes nothing.
package render

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"path"
	"sort"
	"strings"
	"text/template"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
	"github.com/kubectl-selfhost/kubectl-selfhost/manifests"
)

// Asset is one file to write, relative to the asset directory.
type Asset struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// Assets renders every asset for c.
func Assets(c *Config) ([]Asset, error) {
	now := time.Now()
	var a assetList
	certs, err := a.addPKI(c, now)
	if err != nil {
		return nil, err
	}
	token, err := newBootstrapToken(c.BootstrapTokenTTL, now)
	if err != nil {
		return nil, err
	}
	if err := a.addKubeconfigs(c, certs, token); err != nil {
		return nil, err
	}
	if err := a.addEtcdMembers(c, certs.etcdCA, now); err != nil {
		return nil, err
	}
	if err := a.addKubeletFiles(c); err != nil {
		return nil, err
	}
	v := values(c, a)
	v.BootstrapToken = token
	if err := a.addManifests(c, v); err != nil {
		return nil, err
	}
	sort.Slice(a, func(i, j int) bool { return a[i].Name < a[j].Name })
	return a, nil
}

type assetList []Asset

func (a *assetList) add(name string, data []byte, mode fs.FileMode) {
	*a = append(*a, Asset{Name: name, Data: data, Mode: mode})
}

func (a assetList) get(name string) []byte {
	for _, x := range a {
		if x.Name == name {
			return x.Data
		}
	}
	return nil
}

// addPair writes a key pair as <certName> and <keyName>.
func (a *assetList) addPair(kp *pki.KeyPair, certName, keyName string) error {
	key, err := pki.EncodeKey(kp.Key)
	if err != nil {
		return err
	}
	a.add(certName, pki.EncodeCert(kp.Cert), PublicMode)
	a.add(keyName, key, PrivateMode)
	return nil
}

// clientCerts are the client certificates the kubeconfigs embed.
type clientCerts struct {
	ca, admin, etcdCA *pki.KeyPair
}

func (a *assetList) addPKI(c *Config, now time.Time) (*clientCerts, error) {
	alg := c.KeyAlgorithm
	ca, err := orNewCA(c.CA, alg, "kubernetes", now)
	if err != nil {
		return nil, err
	}
	etcdCA, err := orNewCA(c.EtcdCA, alg, "etcd-ca", now)
	if err != nil {
		return nil, err
	}
	frontProxyCA, err := pki.NewCA(alg, "front-proxy-ca", now)
	if err != nil {
		return nil, err
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	leaves := []struct {
		issuer          *pki.KeyPair
		cfg             pki.CertConfig
		certName, keyNm string
	}{
		{issuer: ca, cfg: pki.CertConfig{CommonName: "kube-apiserver", DNSNames: c.apiServerDNSNames(), IPs: c.apiServerIPs(), Usages: server},
			certName: APIServerCert, keyNm: APIServerKey},
		{issuer: ca, cfg: pki.CertConfig{CommonName: "kube-apiserver-kubelet-client", Usages: client},
			certName: APIServerKubeletClientCert, keyNm: APIServerKubeletClientKey},
		{issuer: frontProxyCA, cfg: pki.CertConfig{CommonName: "front-proxy-client", Usages: client},
			certName: FrontProxyClientCert, keyNm: FrontProxyClientKey},
		{issuer: etcdCA, cfg: pki.CertConfig{CommonName: "kube-apiserver-etcd-client", Usages: client},
			certName: EtcdClientCert, keyNm: EtcdClientKey},
	}
	out := &clientCerts{ca: ca, etcdCA: etcdCA}
	for _, l := range leaves {
		kp, err := l.issuer.Issue(alg, l.cfg, now)
		if err != nil {
			return nil, err
		}
		if err := a.addPair(kp, l.certName, l.keyNm); err != nil {
			return nil, err
		}
	}
	// The admin is a revocable group; kubelets join with a bootstrap token.
	if out.admin, err = ca.Issue(alg, pki.CertConfig{CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}, Usages: client}, now); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		kp        *pki.KeyPair
		cert, key string
	}{
		{ca, CACert, CAKey}, {etcdCA, EtcdCACert, EtcdCAKey}, {frontProxyCA, FrontProxyCACert, FrontProxyCAKey},
		{out.admin, AdminCert, AdminKey},
	} {
		if err := a.addPair(p.kp, p.cert, p.key); err != nil {
			return nil, err
		}
	}
	saKey, err := pki.NewKey(alg)
	if err != nil {
		return nil, err
	}
	saPriv, err := pki.EncodeKey(saKey)
	if err != nil {
		return nil, err
	}
	saPub, err := pki.EncodePublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	a.add(ServiceAccountKey, saPriv, PrivateMode)
	a.add(ServiceAccountPub, saPub, PublicMode)
	return out, nil
}

func orNewCA(given *pki.KeyPair, alg pki.KeyAlgorithm, name string, now time.Time) (*pki.KeyPair, error) {
	if given != nil {
		return given, nil
	}
	return pki.NewCA(alg, name, now)
}

// apiServerDNSNames are the in-cluster names, the --api-servers hosts and the alt names.
func (c *Config) apiServerDNSNames() []string {
	names := c.Cluster().APIServerNames()
	for _, u := range c.APIServers {
		if net.ParseIP(u.Hostname()) == nil {
			names = append(names, u.Hostname())
		}
	}
	for _, m := range c.EtcdMembers {
		names = append(names, m.Name)
	}
	return dedupe(append(names, c.AltDNSNames...))
}

func (c *Config) apiServerIPs() []net.IP {
	ips := []net.IP{net.IP(c.APIServiceIP().AsSlice())}
	for _, u := range c.APIServers {
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			ips = append(ips, ip)
		}
	}
	for _, m := range c.EtcdMembers {
		ips = append(ips, net.IP(m.IP.AsSlice()))
	}
	ips = append(ips, c.AltIPs...)
	seen := map[string]bool{}
	var out []net.IP
	for _, ip := range ips {
		if !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Values is what the manifest templates see.
type Values struct {
	Namespace            string
	KubernetesVersion    string
	Images               images.Set
	PodCIDR              string
	ServiceCIDR          string
	ClusterDomain        string
	DNSServiceIP         string
	EtcdServers          string
	APIServerURL         string
	APIServerHost        string
	APIServerPort        string
	AppsNamespace        string
	ControlPlaneReplicas int
	KubeletInsecureTLS   bool
	DNSOffControlPlane   bool
	// BootstrapToken is the kubelets' join credential (render only).
	BootstrapToken BootstrapToken
	// Secret data, file name to base64.
	APIServerSecret         map[string]string
	ControllerManagerSecret map[string]string
}

// ValuesFor is the one place a cluster's configuration becomes template values.
func ValuesFor(c cluster.Config) Values {
	v := Values{
		Namespace:            kube.Namespace,
		KubernetesVersion:    c.KubernetesVersion,
		Images:               c.Images,
		PodCIDR:              c.PodCIDR,
		ServiceCIDR:          c.ServiceCIDR,
		ClusterDomain:        c.ClusterDomain,
		DNSServiceIP:         c.DNSServiceIP,
		EtcdServers:          strings.Join(c.EtcdServers, ","),
		AppsNamespace:        c.AppsNamespace,
		ControlPlaneReplicas: c.ControlPlaneReplicas,
		KubeletInsecureTLS:   c.KubeletInsecureTLS,
		DNSOffControlPlane:   c.DNSOffControlPlane,
	}
	if c.Endpoint != nil {
		v.APIServerURL, v.APIServerHost, v.APIServerPort = c.Endpoint.String(), c.Endpoint.Hostname(), c.Endpoint.Port()
	}
	return v
}

// values adds the Secrets' data, from the rendered assets, to c's values.
func values(c *Config, a assetList) Values {
	secret := func(names ...string) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[path.Base(n)] = base64.StdEncoding.EncodeToString(a.get(n))
		}
		return m
	}
	v := ValuesFor(c.Cluster())
	v.APIServerSecret = secret(CACert, APIServerCert, APIServerKey,
		APIServerKubeletClientCert, APIServerKubeletClientKey,
		FrontProxyCACert, FrontProxyClientCert, FrontProxyClientKey,
		EtcdCACert, EtcdClientCert, EtcdClientKey,
		ServiceAccountKey, ServiceAccountPub)
	v.ControllerManagerSecret = secret(CACert, CAKey, ServiceAccountKey)
	return v
}

// ManifestPath maps a template to the asset it renders: bootstrap-*.yaml go to
// bootstrap-manifests/, the rest to manifests/.
func ManifestPath(template string) string {
	if strings.HasPrefix(template, "bootstrap-") {
		return path.Join(BootstrapManifestDir, template)
	}
	return path.Join(ManifestDir, template)
}

func (a *assetList) addManifests(c *Config, v Values) error {
	names, err := fs.Glob(manifests.FS, "*.yaml")
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == "namespace.yaml" && c.AppsNamespace == "" {
			continue
		}
		data, err := RenderTemplate(name, v)
		if err != nil {
			return err
		}
		mode := fs.FileMode(PublicMode)
		if carriesSecretData(data) {
			mode = PrivateMode // its Secret carries keys
		}
		a.add(ManifestPath(name), data, mode)
	}
	return nil
}

// carriesSecretData reports whether a manifest has a Secret with data.
func carriesSecretData(manifest []byte) bool {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if err != nil {
			return false
		}
		var secret struct {
			Kind       string         `json:"kind"`
			Data       map[string]any `json:"data"`
			StringData map[string]any `json:"stringData"`
		}
		if yaml.Unmarshal(doc, &secret) == nil && secret.Kind == "Secret" && len(secret.Data)+len(secret.StringData) > 0 {
			return true
		}
	}
}

// RenderTemplate fills in one embedded template. A missing value is an error,
// never an empty string in a manifest.
func RenderTemplate(name string, v Values) ([]byte, error) {
	src, err := manifests.FS.ReadFile(name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}
