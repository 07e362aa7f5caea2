package pivot

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// credentialsProblem says what is wrong with the stored credentials, or ""
// when the serving certificate names every control-plane node and no
// certificate with a key in the Secret expires within renewBefore.
func credentialsProblem(s *corev1.Secret, names []string, ips []net.IP, now time.Time) string {
	cert, err := pki.ParseCert(s.Data[servingCert])
	if err != nil {
		return "its " + servingCert + " does not parse"
	}
	for _, n := range names {
		if !slices.Contains(cert.DNSNames, n) {
			return "its serving certificate does not name " + n
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return "its serving certificate does not name " + ip.String()
		}
	}
	expiries, err := pki.Expiries(s.Data)
	if err != nil {
		return err.Error()
	}
	for _, e := range expiries {
		if !e.CA && now.Add(renewBefore).After(e.NotAfter) {
			return e.String()
		}
	}
	return ""
}

// servingNames lists what the shared serving certificate must name: the
// API server's in-cluster names for the cluster's own DNS domain, and every
// control-plane node's name and internal address.
func servingNames(ctx context.Context, c *Context) ([]string, []net.IP, error) {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: kube.ControlPlaneLabel})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list the control-plane nodes: %w", err)
	}
	names := c.Cluster.APIServerNames()
	var ips []net.IP
	for _, n := range nodes.Items {
		names = append(names, n.Name)
		for _, a := range n.Status.Addresses {
			if ip := net.ParseIP(a.Address); a.Type == corev1.NodeInternalIP && ip != nil {
				ips = append(ips, ip)
			}
		}
	}
	return names, ips, nil
}
