package barenode

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// The load balancer is kind's: its image (here the local stand-in) serving
// the configuration kind writes (sigs.k8s.io/kind
// pkg/cluster/internal/loadbalancer/config.go), for our control-plane nodes.
const (
	loadBalancerImage = "envoyproxy/envoy:v1.36.2"
	envoyDir          = "/home/envoy"
)

var envoyFiles = map[string]*template.Template{
	"envoy.yaml": template.Must(template.New("envoy").Parse(`node:
  cluster: {{ .Name }}
  id: {{ .LoadBalancer }}
dynamic_resources:
  cds_config:
    resource_api_version: V3
    path_config_source:
      path: /home/envoy/cds.yaml
  lds_config:
    resource_api_version: V3
    path_config_source:
      path: /home/envoy/lds.yaml
`)),
	"lds.yaml": template.Must(template.New("lds").Parse(`resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: listener_apiserver
  address:
    socket_address:
      address: "0.0.0.0"
      port_value: 6443
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: ingress_tcp
        cluster: kube_apiservers
`)),
	"cds.yaml": template.Must(template.New("cds").Parse(`resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: kube_apiservers
  connect_timeout: 0.25s
  type: STRICT_DNS
  lb_policy: ROUND_ROBIN
  dns_lookup_family: V4_PREFERRED
  health_checks:
  - timeout: 3s
    interval: 2s
    unhealthy_threshold: 2
    healthy_threshold: 1
    initial_jitter: 0s
    no_traffic_interval: 3s
    http_health_check:
      path: /healthz
    transport_socket_match_criteria:
      tls_mode: "true"
  transport_socket_matches:
  - name: "health_check_tls"
    match:
      tls_mode: "true"
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context:
            trust_chain_verification: ACCEPT_UNTRUSTED
  load_assignment:
    cluster_name: kube_apiservers
    endpoints:
    - lb_endpoints:
{{- range .ControlPlanes }}
      - endpoint:
          address:
            socket_address:
              address: {{ . }}
              port_value: 6443
{{- end }}
`)),
}

// createLoadBalancer runs kind's load balancer, its port 6443 published on
// a free loopback port, as kind publishes it.
func (c *Cluster) createLoadBalancer(ctx context.Context) error {
	dir, err := os.MkdirTemp("", c.Name+"-lb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, t := range envoyFiles {
		var b strings.Builder
		if err := t.Execute(&b, c); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	lb := c.LoadBalancer()
	if err := run(ctx, nil, "docker", "create", "--name", lb, "--hostname", lb, "--label", clusterLabel+"="+c.Name,
		"--label", roleLabel+"=external-load-balancer", "--net", network, "--restart=on-failure:1",
		"--publish", "127.0.0.1::"+apiPort, loadBalancerImage, "envoy", "-c", envoyDir+"/envoy.yaml"); err != nil {
		return err
	}
	if err := run(ctx, nil, "docker", "cp", dir+"/.", lb+":"+envoyDir+"/"); err != nil {
		return err
	}
	return run(ctx, nil, "docker", "start", lb)
}
