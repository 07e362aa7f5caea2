package checkpointer

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// LocalProbe runs a host-network pod's HTTP readiness probes from the node,
// as the kubelet would, and reports whether all of them pass. With the API
// down it is the only word on readiness the runtime lacks: an API server
// shutting down after its pod was deleted still runs, and may for its whole
// termination grace period, but already fails /readyz and refuses connections.
// A pod it cannot probe (not on the host network, or no HTTP readiness probe
// on a numeric port) passes.
func LocalProbe(timeout time.Duration) func(*corev1.Pod) bool {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			// The kubelet does not verify a probe's certificate either.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(p *corev1.Pod) bool {
		if p == nil || !p.Spec.HostNetwork {
			return true
		}
		for _, c := range p.Spec.Containers {
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Port.Type != intstr.Int {
				continue
			}
			if !httpProbe(client, c.ReadinessProbe.HTTPGet) {
				return false
			}
		}
		return true
	}
}

// withoutEtcd leaves etcd out of an API server's /readyz: with etcd down
// every parent fails its probe, and starting a checkpoint beside each would
// add API servers that cannot serve either.
func withoutEtcd(q url.Values) url.Values {
	for _, check := range []string{"etcd", "etcd-readiness"} {
		if !slices.Contains(q["exclude"], check) {
			q.Add("exclude", check)
		}
	}
	return q
}

func httpProbe(client *http.Client, g *corev1.HTTPGetAction) bool {
	host := g.Host
	if host == "" {
		host = "127.0.0.1" // the pod's address is the node's
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	target, err := url.Parse(g.Path)
	if err != nil {
		return false
	}
	if target.Path == "/readyz" {
		target.RawQuery = withoutEtcd(target.Query()).Encode()
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(g.Port.IntValue())), Path: target.Path, RawQuery: target.RawQuery}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
