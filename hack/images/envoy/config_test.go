package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadKindGeneratedConfig(t *testing.T) {
	kindCheck := &HealthCheck{
		Interval:           2 * time.Second,
		Timeout:            3 * time.Second,
		UnhealthyThreshold: 2,
		HealthyThreshold:   1,
		Path:               "/healthz",
		TLS:                true,
	}
	tests := []struct {
		dir  string
		want Config
	}{{
		dir: "kind-ha",
		want: Config{
			Listeners: []Listener{{Name: "listener_apiserver", Address: "0.0.0.0:6443", Cluster: "kube_apiservers"}},
			Clusters: []Cluster{{
				Name:           "kube_apiservers",
				ConnectTimeout: 250 * time.Millisecond,
				Endpoints:      []string{"kind-control-plane:6443", "kind-control-plane2:6443", "kind-control-plane3:6443"},
				HealthCheck:    kindCheck,
			}},
		},
	}, {
		dir: "kind-ipv6",
		want: Config{
			Listeners: []Listener{{Name: "listener_apiserver", Address: "[::]:6443", Cluster: "kube_apiservers"}},
			Clusters: []Cluster{{
				Name:           "kube_apiservers",
				ConnectTimeout: 250 * time.Millisecond,
				Endpoints:      []string{"v6-control-plane:6443", "v6-control-plane2:6443"},
				HealthCheck:    kindCheck,
			}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", tt.dir)
			paths, err := LoadBootstrap(filepath.Join(dir, "envoy.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			// kind's bootstrap names absolute paths inside the container.
			if paths != (Paths{LDS: "/home/envoy/lds.yaml", CDS: "/home/envoy/cds.yaml"}) {
				t.Fatalf("bootstrap paths = %+v", paths)
			}
			cfg, _, _, err := Load(Paths{LDS: filepath.Join(dir, "lds.yaml"), CDS: filepath.Join(dir, "cds.yaml")})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*cfg, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", *cfg, tt.want)
			}
			if hc := cfg.Clusters[0].HealthCheck; hc.url("kind-control-plane:6443") != "https://kind-control-plane:6443/healthz" {
				t.Fatalf("health check url = %s", hc.url("kind-control-plane:6443"))
			}
		})
	}
}

// kind starts the container with "resources: []" in both files and swaps in
// the real ones later.
func TestLoadKindPlaceholder(t *testing.T) {
	cfg, _, _, err := Load(Paths{LDS: "testdata/kind-initial/lds.yaml", CDS: "testdata/kind-initial/cds.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 0 || len(cfg.Clusters) != 0 {
		t.Fatalf("want an empty config, got %+v", cfg)
	}
}

func TestLoadBootstrapDefaultsToSiblingFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(path, []byte("admin: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadBootstrap(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Paths{LDS: filepath.Join(dir, "lds.yaml"), CDS: filepath.Join(dir, "cds.yaml")}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestHealthCheckWithoutTLSMatch(t *testing.T) {
	cds := kindCDS(t, []string{"127.0.0.1:1"}, "2s", "3s")
	cds = strings.Replace(cds, `tls_mode: "true"`+"\n  transport_socket_matches", `tls_mode: "false"`+"\n  transport_socket_matches", 1)
	cs, err := ParseCDS([]byte(cds))
	if err != nil {
		t.Fatal(err)
	}
	if hc := cs[0].HealthCheck; hc.TLS || hc.url("h:1") != "http://h:1/healthz" {
		t.Fatalf("criteria that match no transport socket must mean plain HTTP, got %+v", hc)
	}
}

func TestParseErrors(t *testing.T) {
	lds, err := os.ReadFile("testdata/kind-ha/lds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cds := kindCDS(t, []string{"127.0.0.1:1"}, "2s", "3s")
	tests := []struct {
		name, lds, cds, want string
	}{
		{"not yaml", "resources: [", cds, "lds.yaml: error converting YAML to JSON"},
		{"wrong type", strings.Replace(string(lds), "listener.v3.Listener", "listener.v3.Nope", 1), cds, `@type is "type.googleapis.com/envoy.config.listener.v3.Nope"`},
		{"no port", strings.Replace(string(lds), "port_value: 6443", "port_value: http", 1), cds, `"http" is not an integer`},
		{"no tcp_proxy", strings.Replace(string(lds), "cluster: kube_apiservers", "", 1), cds, "no tcp_proxy filter naming a cluster"},
		{"bad duration", string(lds), strings.Replace(cds, "interval: 2s", "interval: 2", 1), "duration 2 is not a string"},
		{"no endpoint address", string(lds), strings.Replace(cds, "address: 127.0.0.1", "address: ''", 1), "endpoint 0: socket_address.address is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(Paths{LDS: "/x/lds.yaml", CDS: "/x/cds.yaml"}, []byte(tt.lds), []byte(tt.cds))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// kindCDS returns kind's generated cds.yaml (testdata/kind-ha) with only the
// endpoints and the health-check timings changed, so tests run on loopback
// and in seconds.
func kindCDS(t *testing.T, endpoints []string, interval, timeout string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/kind-ha/cds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	const list = "    - lb_endpoints:\n"
	i := strings.Index(s, list)
	if i < 0 {
		t.Fatal("kind's cds.yaml has no lb_endpoints")
	}
	s = s[:i+len(list)]
	for _, e := range endpoints {
		host, port, _ := strings.Cut(e, ":")
		s += "      - endpoint:\n          address:\n            socket_address:\n" +
			"              address: " + host + "\n              port_value: " + port + "\n"
	}
	for from, to := range map[string]string{"interval: 2s": "interval: " + interval, "timeout: 3s": "timeout: " + timeout} {
		if !strings.Contains(s, from) {
			t.Fatalf("kind's cds.yaml has no %q", from)
		}
		s = strings.Replace(s, from, to, 1)
	}
	return s
}

// kindLDS returns kind's generated lds.yaml listening on 127.0.0.1:port.
func kindLDS(t *testing.T, port string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/kind-ha/lds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `address: "0.0.0.0"`, `address: "127.0.0.1"`, 1)
	return strings.Replace(s, "port_value: 6443", "port_value: "+port, 1)
}
