package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the part of envoy's xDS that kind's load balancer uses:
// TCP listeners, each proxying to one cluster of host:port endpoints.
type Config struct {
	Listeners []Listener
	Clusters  []Cluster
}

// Listener accepts TCP on Address and proxies to the cluster named Cluster.
type Listener struct {
	Name    string
	Address string // host:port
	Cluster string
}

// Cluster is a set of endpoints, balanced round robin.
type Cluster struct {
	Name           string
	ConnectTimeout time.Duration
	Endpoints      []string // host:port; hosts may be DNS names
	HealthCheck    *HealthCheck
}

// HealthCheck is an active HTTP(S) health check; nil means "always healthy",
// as envoy treats a cluster without health_checks.
type HealthCheck struct {
	Interval           time.Duration
	Timeout            time.Duration
	UnhealthyThreshold int
	HealthyThreshold   int
	Path               string
	TLS                bool
}

// Paths are the LDS and CDS files named by the bootstrap file.
type Paths struct {
	LDS, CDS string
}

const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	tcpProxyType = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	tlsSocket    = "envoy.transport_sockets.tls"

	defaultConnectTimeout = 5 * time.Second // envoy's default
)

// LoadBootstrap reads envoy.yaml. Paths it does not name default to
// lds.yaml and cds.yaml next to it.
func LoadBootstrap(path string) (Paths, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Paths{}, err
	}
	var raw struct {
		DynamicResources struct {
			CDS rawConfigSource `json:"cds_config"`
			LDS rawConfigSource `json:"lds_config"`
		} `json:"dynamic_resources"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return Paths{}, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	p := Paths{
		LDS: raw.DynamicResources.LDS.path(),
		CDS: raw.DynamicResources.CDS.path(),
	}
	if p.LDS == "" {
		p.LDS = filepath.Join(dir, "lds.yaml")
	}
	if p.CDS == "" {
		p.CDS = filepath.Join(dir, "cds.yaml")
	}
	return p, nil
}

type rawConfigSource struct {
	Path             string `json:"path"` // deprecated form, still accepted by envoy
	PathConfigSource struct {
		Path string `json:"path"`
	} `json:"path_config_source"`
}

func (s rawConfigSource) path() string {
	if s.PathConfigSource.Path != "" {
		return s.PathConfigSource.Path
	}
	return s.Path
}

// ParseLDS parses an LDS file. "resources: []" (kind's placeholder) is valid.
func ParseLDS(data []byte) ([]Listener, error) {
	var raw struct {
		Resources []struct {
			Type         string        `json:"@type"`
			Name         string        `json:"name"`
			Address      rawAddress    `json:"address"`
			FilterChains []filterChain `json:"filter_chains"`
		} `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var out []Listener
	seen := map[string]bool{}
	for i, r := range raw.Resources {
		where := fmt.Sprintf("listener %d (%q)", i, r.Name)
		if r.Type != listenerType {
			return nil, fmt.Errorf("%s: @type is %q, want %q", where, r.Type, listenerType)
		}
		if r.Name == "" || seen[r.Name] {
			return nil, fmt.Errorf("%s: name is empty or repeated", where)
		}
		seen[r.Name] = true
		addr, err := r.Address.hostPort()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		cluster := tcpProxyCluster(r.FilterChains)
		if cluster == "" {
			return nil, fmt.Errorf("%s: no tcp_proxy filter naming a cluster", where)
		}
		out = append(out, Listener{Name: r.Name, Address: addr, Cluster: cluster})
	}
	return out, nil
}

type filterChain struct {
	Filters []struct {
		Name        string `json:"name"`
		TypedConfig struct {
			Type    string `json:"@type"`
			Cluster string `json:"cluster"`
		} `json:"typed_config"`
	} `json:"filters"`
}

func tcpProxyCluster(chains []filterChain) string {
	for _, fc := range chains {
		for _, f := range fc.Filters {
			if f.TypedConfig.Type == tcpProxyType || f.Name == "envoy.filters.network.tcp_proxy" {
				return f.TypedConfig.Cluster
			}
		}
	}
	return ""
}

// ParseCDS parses a CDS file. "resources: []" (kind's placeholder) is valid.
func ParseCDS(data []byte) ([]Cluster, error) {
	var raw struct {
		Resources []rawCluster `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var out []Cluster
	seen := map[string]bool{}
	for i, r := range raw.Resources {
		where := fmt.Sprintf("cluster %d (%q)", i, r.Name)
		if r.Type != clusterType {
			return nil, fmt.Errorf("%s: @type is %q, want %q", where, r.Type, clusterType)
		}
		if r.Name == "" || seen[r.Name] {
			return nil, fmt.Errorf("%s: name is empty or repeated", where)
		}
		seen[r.Name] = true
		c, err := r.cluster()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, c)
	}
	return out, nil
}

type rawCluster struct {
	Type           string   `json:"@type"`
	Name           string   `json:"name"`
	ConnectTimeout duration `json:"connect_timeout"`
	HealthChecks   []struct {
		Timeout            duration `json:"timeout"`
		Interval           duration `json:"interval"`
		UnhealthyThreshold number   `json:"unhealthy_threshold"`
		HealthyThreshold   number   `json:"healthy_threshold"`
		HTTPHealthCheck    *struct {
			Path string `json:"path"`
		} `json:"http_health_check"`
		TransportSocketMatchCriteria map[string]string `json:"transport_socket_match_criteria"`
	} `json:"health_checks"`
	TransportSocket        rawTransportSocket `json:"transport_socket"`
	TransportSocketMatches []struct {
		Match           map[string]string  `json:"match"`
		TransportSocket rawTransportSocket `json:"transport_socket"`
	} `json:"transport_socket_matches"`
	LoadAssignment struct {
		Endpoints []struct {
			LBEndpoints []struct {
				Endpoint struct {
					Address rawAddress `json:"address"`
				} `json:"endpoint"`
			} `json:"lb_endpoints"`
		} `json:"endpoints"`
	} `json:"load_assignment"`
}

type rawTransportSocket struct {
	Name string `json:"name"`
}

func (r rawCluster) cluster() (Cluster, error) {
	c := Cluster{Name: r.Name, ConnectTimeout: time.Duration(r.ConnectTimeout)}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	for _, group := range r.LoadAssignment.Endpoints {
		for j, e := range group.LBEndpoints {
			addr, err := e.Endpoint.Address.hostPort()
			if err != nil {
				return Cluster{}, fmt.Errorf("endpoint %d: %w", j, err)
			}
			c.Endpoints = append(c.Endpoints, addr)
		}
	}
	if len(r.HealthChecks) == 0 {
		return c, nil
	}
	// Envoy runs every listed check; kind lists one, so we honour the first.
	h := r.HealthChecks[0]
	if h.HTTPHealthCheck == nil {
		return Cluster{}, errors.New("health check is not an http_health_check, the only kind supported")
	}
	hc := &HealthCheck{
		Interval:           time.Duration(h.Interval),
		Timeout:            time.Duration(h.Timeout),
		UnhealthyThreshold: int(h.UnhealthyThreshold),
		HealthyThreshold:   int(h.HealthyThreshold),
		Path:               h.HTTPHealthCheck.Path,
		TLS:                r.TransportSocket.Name == tlsSocket,
	}
	// kind puts TLS on the health check only, via transport_socket_match_criteria;
	// proxied traffic stays plain TCP (TLS passthrough to the API server).
	if h.TransportSocketMatchCriteria != nil {
		for _, m := range r.TransportSocketMatches {
			if subset(m.Match, h.TransportSocketMatchCriteria) {
				hc.TLS = m.TransportSocket.Name == tlsSocket
				break
			}
		}
	}
	if hc.Interval <= 0 {
		return Cluster{}, errors.New("health check interval must be positive")
	}
	if hc.Timeout <= 0 {
		return Cluster{}, errors.New("health check timeout must be positive")
	}
	if hc.Path == "" {
		hc.Path = "/"
	}
	hc.UnhealthyThreshold = max(hc.UnhealthyThreshold, 1)
	hc.HealthyThreshold = max(hc.HealthyThreshold, 1)
	c.HealthCheck = hc
	return c, nil
}

// subset reports whether every key of match has the same value in criteria.
func subset(match, criteria map[string]string) bool {
	for k, v := range match {
		if criteria[k] != v {
			return false
		}
	}
	return true
}

type rawAddress struct {
	SocketAddress *struct {
		Address   string `json:"address"`
		PortValue number `json:"port_value"`
	} `json:"socket_address"`
}

func (a rawAddress) hostPort() (string, error) {
	s := a.SocketAddress
	if s == nil || s.Address == "" {
		return "", errors.New("socket_address.address is missing")
	}
	if s.PortValue < 0 || s.PortValue > 65535 {
		return "", fmt.Errorf("port_value %d is out of range", s.PortValue)
	}
	return net.JoinHostPort(s.Address, strconv.Itoa(int(s.PortValue))), nil
}

// duration is a protobuf Duration in its JSON form, e.g. "0.25s".
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s is not a string like \"0.25s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// number accepts 6443 and "6443": protobuf JSON allows both for integers.
type number int64

func (n *number) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(string(bytes.Trim(b, `"`)), 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = number(v)
	return nil
}

// Load reads and parses both files. It also returns their bytes, so the
// watcher can tell a changed file from an unchanged one.
func Load(p Paths) (cfg *Config, lds, cds []byte, err error) {
	if lds, err = os.ReadFile(p.LDS); err != nil {
		return nil, nil, nil, err
	}
	if cds, err = os.ReadFile(p.CDS); err != nil {
		return nil, nil, nil, err
	}
	cfg, err = parse(p, lds, cds)
	return cfg, lds, cds, err
}

func parse(p Paths, lds, cds []byte) (*Config, error) {
	var cfg Config
	var err error
	if cfg.Listeners, err = ParseLDS(lds); err != nil {
		return nil, fmt.Errorf("%s: %w", p.LDS, err)
	}
	if cfg.Clusters, err = ParseCDS(cds); err != nil {
		return nil, fmt.Errorf("%s: %w", p.CDS, err)
	}
	return &cfg, nil
}

// missingClusters lists the listeners' clusters that cfg lacks, for a warning:
// kind replaces cds.yaml before lds.yaml, but a hand edit may not.
func (cfg *Config) missingClusters() []string {
	have := map[string]bool{}
	for _, c := range cfg.Clusters {
		have[c.Name] = true
	}
	var missing []string
	for _, l := range cfg.Listeners {
		if !have[l.Cluster] {
			missing = append(missing, l.Cluster)
		}
	}
	return missing
}

func (hc *HealthCheck) url(addr string) string {
	scheme := "http"
	if hc.TLS {
		scheme = "https"
	}
	return scheme + "://" + addr + "/" + strings.TrimPrefix(hc.Path, "/")
}
