package render

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// Input is what the user typed, before validation.
type Input struct {
	APIServers        []string
	APIServerAltNames []string
	PodCIDR           string
	ServiceCIDR       string
	ClusterDomain     string
	EtcdServers       []string
	// EtcdMembers are name=ip pairs: a static etcd member on each
	// control-plane node, instead of the external --etcd-servers.
	EtcdMembers        []string
	BootstrapTokenTTL  time.Duration
	KubeletInsecureTLS bool
	DNSOffControlPlane bool
	KubernetesVersion  string
	CheckpointerImage  string
	KeyAlgorithm       string
	CACert, CAKey      string
	EtcdCACert         string
	EtcdCAKey          string
	AppsNamespace      string
}

// DefaultInput returns the defaults of every render flag.
func DefaultInput() Input {
	return Input{
		APIServers:        []string{"https://127.0.0.1:6443"},
		PodCIDR:           "10.244.0.0/16",
		ServiceCIDR:       "10.96.0.0/12",
		ClusterDomain:     cluster.DefaultDomain,
		EtcdServers:       []string{"https://127.0.0.1:2379"},
		KubernetesVersion: images.KubernetesVersion,
		CheckpointerImage: images.DefaultCheckpointer,
		KeyAlgorithm:      string(pki.ECDSAP256),
		BootstrapTokenTTL: 24 * time.Hour,
	}
}

// Config is validated input, ready to render.
type Config struct {
	APIServers    []*url.URL
	AltDNSNames   []string
	AltIPs        []net.IP
	PodCIDR       netip.Prefix
	ServiceCIDR   netip.Prefix
	ClusterDomain string
	EtcdServers   []*url.URL
	EtcdMembers   []EtcdMember
	// BootstrapTokenTTL is how long kubelets may join with the rendered
	// token; 0 keeps it until it is deleted.
	BootstrapTokenTTL  time.Duration
	KubeletInsecureTLS bool
	DNSOffControlPlane bool
	KubernetesVersion  string
	Images             images.Set
	KeyAlgorithm       pki.KeyAlgorithm
	CA                 *pki.KeyPair // nil: create one
	EtcdCA             *pki.KeyPair // nil: create one
	AppsNamespace      string
}

// Cluster is the cluster configuration that render's flags describe.
func (c *Config) Cluster() cluster.Config {
	var etcd []string
	for _, u := range c.EtcdServers {
		etcd = append(etcd, u.String())
	}
	return cluster.Config{
		KubernetesVersion:  c.KubernetesVersion,
		Endpoint:           c.APIServers[0],
		EtcdServers:        etcd,
		PodCIDR:            c.PodCIDR.String(),
		ServiceCIDR:        c.ServiceCIDR.String(),
		ClusterDomain:      c.ClusterDomain,
		DNSServiceIP:       c.DNSServiceIP().String(),
		Images:             c.Images,
		AppsNamespace:      c.AppsNamespace,
		KubeletInsecureTLS: c.KubeletInsecureTLS,
		DNSOffControlPlane: c.DNSOffControlPlane,
		// bootkube ran two; required anti-affinity keeps them on separate nodes.
		ControlPlaneReplicas: 2,
	}
}

// Parse validates every input and returns the first problem as one sentence.
// Nothing is written before Parse succeeds.
func (in Input) Parse() (*Config, error) {
	c := &Config{ClusterDomain: in.ClusterDomain, AppsNamespace: in.AppsNamespace}
	var err error
	if c.APIServers, err = parseURLs("--api-servers", in.APIServers); err != nil {
		return nil, err
	}
	if c.EtcdServers, err = parseURLs("--etcd-servers", in.EtcdServers); err != nil {
		return nil, err
	}
	if len(in.EtcdMembers) > 0 {
		if !slices.Equal(in.EtcdServers, DefaultInput().EtcdServers) {
			return nil, fmt.Errorf("give --etcd-servers (an external etcd) or --etcd-members (a static member on each control-plane node), not both")
		}
		if c.EtcdMembers, err = parseEtcdMembers(in.EtcdMembers); err != nil {
			return nil, err
		}
		c.EtcdServers = nil
		for _, m := range c.EtcdMembers {
			c.EtcdServers = append(c.EtcdServers, m.ClientURL())
		}
	}
	if in.BootstrapTokenTTL < 0 {
		return nil, fmt.Errorf("--bootstrap-token-ttl %s is negative; use 0 for a token that lasts until it is deleted", in.BootstrapTokenTTL)
	}
	c.BootstrapTokenTTL, c.KubeletInsecureTLS, c.DNSOffControlPlane = in.BootstrapTokenTTL, in.KubeletInsecureTLS, in.DNSOffControlPlane
	if c.AltDNSNames, c.AltIPs, err = parseAltNames(in.APIServerAltNames); err != nil {
		return nil, err
	}
	if c.PodCIDR, err = parseCIDR("--pod-cidr", in.PodCIDR); err != nil {
		return nil, err
	}
	if c.ServiceCIDR, err = parseCIDR("--service-cidr", in.ServiceCIDR); err != nil {
		return nil, err
	}
	if c.PodCIDR.Overlaps(c.ServiceCIDR) {
		return nil, fmt.Errorf("--service-cidr %s overlaps --pod-cidr %s: pick ranges that do not intersect", c.ServiceCIDR, c.PodCIDR)
	}
	// The service CIDR needs room for the API service IP (.1) and DNS (.10).
	if c.ServiceCIDR.Addr().BitLen()-c.ServiceCIDR.Bits() < 4 {
		return nil, fmt.Errorf("--service-cidr %s is too small: it needs at least 16 addresses", c.ServiceCIDR)
	}
	if errs := validation.IsDNS1123Subdomain(in.ClusterDomain); len(errs) > 0 {
		return nil, fmt.Errorf("--cluster-domain %q is not a valid DNS domain: %s", in.ClusterDomain, errs[0])
	}
	if in.AppsNamespace != "" {
		if errs := validation.IsDNS1123Label(in.AppsNamespace); len(errs) > 0 {
			return nil, fmt.Errorf("--apps-namespace %q is not a valid namespace name: %s", in.AppsNamespace, errs[0])
		}
	}
	if c.KubernetesVersion, err = parseKubernetesVersion(in.KubernetesVersion); err != nil {
		return nil, err
	}
	if err := images.CheckReference("--checkpointer-image", in.CheckpointerImage); err != nil {
		return nil, err
	}
	c.Images = images.Upstream(c.KubernetesVersion, in.CheckpointerImage)
	if c.KeyAlgorithm, err = pki.ParseKeyAlgorithm(in.KeyAlgorithm); err != nil {
		return nil, fmt.Errorf("--key-algorithm: %w", err)
	}
	if c.CA, err = loadOptionalCA("--ca-cert", "--ca-key", in.CACert, in.CAKey); err != nil {
		return nil, err
	}
	if c.EtcdCA, err = loadOptionalCA("--etcd-ca-cert", "--etcd-ca-key", in.EtcdCACert, in.EtcdCAKey); err != nil {
		return nil, err
	}
	return c, nil
}

func parseURLs(flag string, values []string) ([]*url.URL, error) {
	if len(values) == 0 {
		return nil, fmt.Errorf("%s needs at least one URL", flag)
	}
	var out []*url.URL
	for _, v := range values {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%s entry %q is not an https://host:port URL", flag, v)
		}
		if u.Port() == "" {
			return nil, fmt.Errorf("%s entry %q has no port", flag, v)
		}
		out = append(out, u)
	}
	return out, nil
}

// parseAltNames accepts bootkube's "DNS=name" and "IP=addr" forms, and bare values.
func parseAltNames(values []string) (dns []string, ips []net.IP, err error) {
	for _, v := range values {
		kind, name, found := strings.Cut(v, "=")
		if !found {
			kind, name = "", v
			if net.ParseIP(v) != nil {
				kind = "IP"
			}
		}
		switch strings.ToUpper(kind) {
		case "IP":
			ip := net.ParseIP(name)
			if ip == nil {
				return nil, nil, fmt.Errorf("--api-server-alt-names entry %q is not an IP address", v)
			}
			ips = append(ips, ip)
		case "DNS", "":
			if errs := validation.IsDNS1123Subdomain(strings.TrimPrefix(name, "*.")); len(errs) > 0 {
				return nil, nil, fmt.Errorf("--api-server-alt-names entry %q is not a DNS name: %s", v, errs[0])
			}
			dns = append(dns, name)
		default:
			return nil, nil, fmt.Errorf("--api-server-alt-names entry %q: use DNS=<name> or IP=<address>", v)
		}
	}
	return dns, ips, nil
}

func parseCIDR(flag, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q is not a CIDR such as 10.244.0.0/16", flag, s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s %q has host bits set; did you mean %s?", flag, s, p.Masked())
	}
	return p, nil
}

func parseKubernetesVersion(s string) (string, error) {
	if !strings.HasPrefix(s, "v") {
		return "", fmt.Errorf("--kubernetes-version %q is not a version such as %s", s, images.KubernetesVersion)
	}
	v, err := version.ParseSemantic(s)
	if err != nil {
		return "", fmt.Errorf("--kubernetes-version %q is not a version such as %s", s, images.KubernetesVersion)
	}
	// --permit-port-sharing and policy/v1 PDBs set the floor.
	if min := version.MustParseSemantic("v1.30.0"); v.LessThan(min) {
		return "", fmt.Errorf("--kubernetes-version %s is older than the oldest supported, v1.30.0", s)
	}
	return s, nil
}

func loadOptionalCA(certFlag, keyFlag, cert, key string) (*pki.KeyPair, error) {
	switch {
	case cert == "" && key == "":
		return nil, nil
	case cert == "" || key == "":
		return nil, fmt.Errorf("%s and %s must be given together", certFlag, keyFlag)
	}
	ca, err := pki.LoadCA(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", certFlag, keyFlag, err)
	}
	return ca, nil
}

// APIServiceIP is the first address of the service CIDR: the kubernetes Service.
func (c *Config) APIServiceIP() netip.Addr { return c.ServiceCIDR.Addr().Next() }

// DNSServiceIP is the tenth address of the service CIDR, as kubeadm picks it.
func (c *Config) DNSServiceIP() netip.Addr {
	a := c.ServiceCIDR.Addr()
	for range 10 {
		a = a.Next()
	}
	return a
}

// EtcdMember is one static etcd member, on the control-plane node of its name.
type EtcdMember struct {
	Name string
	IP   netip.Addr
}

// ClientURL is where the API servers reach the member.
func (m EtcdMember) ClientURL() *url.URL {
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(m.IP.String(), "2379")}
}

// PeerURL is where the other members reach it.
func (m EtcdMember) PeerURL() string {
	return "https://" + net.JoinHostPort(m.IP.String(), "2380")
}

func parseEtcdMembers(values []string) ([]EtcdMember, error) {
	var out []EtcdMember
	seen := map[string]bool{}
	for _, v := range values {
		name, ip, found := strings.Cut(v, "=")
		addr, err := netip.ParseAddr(ip)
		if !found || err != nil {
			return nil, fmt.Errorf("--etcd-members entry %q is not name=ip, such as node1=10.0.0.11", v)
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("--etcd-members entry %q: %q is not a node name: %s", v, name, errs[0])
		}
		if seen[name] || seen[addr.String()] {
			return nil, fmt.Errorf("--etcd-members names %q or %s twice", name, addr)
		}
		seen[name], seen[addr.String()] = true, true
		out = append(out, EtcdMember{Name: name, IP: addr})
	}
	if len(out)%2 == 0 {
		return nil, fmt.Errorf("--etcd-members has %d members; etcd needs an odd number to keep a quorum through a failure", len(out))
	}
	return out, nil
}
