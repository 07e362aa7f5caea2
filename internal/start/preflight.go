package start

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
)

// Preflight checks everything start needs and changes nothing: root, the
// assets complete and consistent, the kubelet's static pod directory, and
// a quorum of etcd. It waits for etcd up to timeout, since its members may
// still be starting.
func Preflight(ctx context.Context, o Options, a *Assets, step *progress.Step, timeout time.Duration) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("start must run as root on the first control-plane host: it writes static pods and credentials")
	}
	if err := a.checkCertificates(hostNames(o.NodeName)); err != nil {
		return err
	}
	if fi, err := os.Stat(o.PodManifestDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("the kubelet's static pod directory %s does not exist; is the kubelet installed with the rendered kubelet/ files?", o.PodManifestDir)
	}
	if _, err := os.Stat(o.SecretsDir); err == nil && !holdsFiles(o.SecretsDir, a.Secrets, 0o600) {
		return fmt.Errorf("%s holds credentials of other assets; remove it if no cluster uses it", o.SecretsDir)
	}
	return awaitEtcdQuorum(ctx, a, step, timeout)
}

// hostNames are the names and addresses the API server certificate may
// name for this host.
func hostNames(node string) []string {
	names := []string{node}
	if h, err := os.Hostname(); err == nil && h != node {
		names = append(names, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			names = append(names, ipn.IP.String())
		}
	}
	return names
}

// awaitEtcdQuorum waits until most etcd servers complete a TLS handshake
// with the API server's etcd client certificate.
func awaitEtcdQuorum(ctx context.Context, a *Assets, step *progress.Step, timeout time.Duration) error {
	cert, err := tls.X509KeyPair(a.asset(render.EtcdClientCert), a.asset(render.EtcdClientKey))
	if err != nil {
		return fmt.Errorf("the etcd client certificate does not load: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(a.asset(render.EtcdCACert))
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MinVersion: tls.VersionTLS12}
	var down []string
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		down = nil
		for _, s := range a.EtcdServers {
			if err := handshake(ctx, s, cfg); err != nil {
				down = append(down, s)
			}
		}
		if 2*len(down) >= len(a.EtcdServers) {
			step.Waiting("etcd: %s not reachable yet", strings.Join(down, ", "))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("etcd has no quorum: %s do not answer with the rendered certificates", strings.Join(down, ", "))
	}
	return nil
}

func handshake(ctx context.Context, server string, cfg *tls.Config) error {
	u, err := url.Parse(server)
	if err != nil {
		return err
	}
	c := cfg.Clone()
	c.ServerName = u.Hostname()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: c}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	return conn.Close()
}
