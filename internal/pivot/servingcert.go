package pivot

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// sharedServingCert issues a serving certificate like kubeadm's (same subject
// and names) that also names every control-plane node, so one Secret serves
// the whole DaemonSet.
func sharedServingCert(ca *pki.KeyPair, kubeadmCert []byte, names []string, ips []net.IP, now time.Time) (*pki.KeyPair, error) {
	orig, err := pki.ParseCert(kubeadmCert)
	if err != nil {
		return nil, fmt.Errorf("kubeadm's API server certificate: %w", err)
	}
	if err := orig.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("kubeadm's API server certificate is not signed by the cluster CA: %w", err)
	}
	dns := slices.Clone(orig.DNSNames)
	for _, n := range names {
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	addrs := slices.Clone(orig.IPAddresses)
	for _, ip := range ips {
		if !slices.ContainsFunc(addrs, ip.Equal) {
			addrs = append(addrs, ip)
		}
	}
	return ca.Issue(pki.ECDSAP256, pki.CertConfig{
		CommonName: orig.Subject.CommonName, Organization: orig.Subject.Organization,
		DNSNames: dns, IPs: addrs, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, now)
}

// servingCertCovers says what is wrong with the stored serving certificate,
// or "" when it names every control-plane node and is not about to expire.
func servingCertCovers(s *corev1.Secret, names []string, ips []net.IP, now time.Time) string {
	cert, err := pki.ParseCert(s.Data[servingCert])
	if err != nil {
		return "its " + servingCert + " does not parse"
	}
	if now.Add(renewBefore).After(cert.NotAfter) {
		return "its serving certificate expires on " + cert.NotAfter.Format(time.DateOnly)
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
