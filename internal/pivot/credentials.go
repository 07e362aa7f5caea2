package pivot

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// How the self-hosted API server gets its certificates and keys.
const (
	// CertsSecret mounts them from Secret kube-system/kube-apiserver, as
	// bootkube did, with one serving certificate for every control-plane node.
	CertsSecret = "secret"
	// CertsHostPath mounts kubeadm's /etc/kubernetes/pki from each node.
	CertsHostPath = "hostpath"
)

// APIServerSecret holds the self-hosted API server's credentials.
const APIServerSecret = "kube-apiserver"

// kubeadm's layout: the pki directory, and in it the API server's serving
// certificate and key and the cluster CA (.crt and .key).
const (
	kubeadmPKI  = "/etc/kubernetes/pki"
	servingCert = "apiserver.crt"
	servingKey  = "apiserver.key"
	clusterCA   = "ca"
)

// renewBefore is how close to expiry a stored serving certificate may be
// before a rerun of bootstrap replaces it.
const renewBefore = 30 * 24 * time.Hour

// pkiFiles lists the files under kubeadm's pki directory that the container's
// flags name, as Secret items: key etcd-ca.crt -> path etcd/ca.crt.
func pkiFiles(c *corev1.Container) []corev1.KeyToPath {
	seen := map[string]bool{}
	var items []corev1.KeyToPath
	for _, arg := range c.Command {
		_, value, ok := strings.Cut(arg, "=")
		rel, under := strings.CutPrefix(value, kubeadmPKI+"/")
		if !ok || !under || seen[rel] {
			continue
		}
		seen[rel] = true
		items = append(items, corev1.KeyToPath{Key: strings.ReplaceAll(rel, "/", "-"), Path: rel})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return items
}

// flagValue returns --name's value in cmd.
func flagValue(cmd []string, name string) string {
	for _, arg := range cmd {
		if v, ok := strings.CutPrefix(arg, name+"="); ok {
			return v
		}
	}
	return ""
}

// MountCertsSecret swaps the hostPath volume of kubeadm's pki directory for
// Secret secret, projected at the same paths, so every flag stays as kubeadm
// wrote it. The checkpointer copies the Secret to disk with the pod.
func MountCertsSecret(t *corev1.PodTemplateSpec, secret string) error {
	c := &t.Spec.Containers[0]
	items := pkiFiles(c)
	if len(items) == 0 {
		return fmt.Errorf("the API server's flags name no file under %s", kubeadmPKI)
	}
	for i, v := range t.Spec.Volumes {
		if v.HostPath == nil || path.Clean(v.HostPath.Path) != kubeadmPKI {
			continue
		}
		t.Spec.Volumes[i].VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, Items: items, DefaultMode: ptr.To[int32](0o600),
		}}
		return nil
	}
	return fmt.Errorf("the API server mounts no hostPath volume of %s", kubeadmPKI)
}

// storeAPIServerCredentials reads the files the API server's flags name from
// one control-plane node and stores them in Secret kube-system/kube-apiserver.
// kubeadm's serving certificate names one node, so a new one is issued from
// the cluster CA for every control-plane node's names and addresses.
type storeAPIServerCredentials struct{}

func (*storeAPIServerCredentials) Name() string {
	return "Storing the API server's credentials in Secret " + Namespace + "/" + APIServerSecret
}

func (*storeAPIServerCredentials) Done(ctx context.Context, c *Context) (bool, error) {
	s, err := c.Client.CoreV1().Secrets(Namespace).Get(ctx, APIServerSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	names, ips, err := servingNames(ctx, c)
	if err != nil {
		return false, err
	}
	return servingCertCovers(s, names, ips, time.Now()) == "", nil
}

func (a *storeAPIServerCredentials) Execute(ctx context.Context, c *Context) error {
	node, container, err := credentialsSource(ctx, c)
	if err != nil {
		return err
	}
	cmd := container.Command
	if flagValue(cmd, "--tls-cert-file") != kubeadmPKI+"/"+servingCert || flagValue(cmd, "--tls-private-key-file") != kubeadmPKI+"/"+servingKey ||
		flagValue(cmd, "--client-ca-file") != kubeadmPKI+"/"+clusterCA+".crt" {
		return fmt.Errorf("static kube-apiserver on %s does not use kubeadm's %s/{%s,%s,%s.crt}; use --certs %s", node, kubeadmPKI, servingCert, servingKey, clusterCA, CertsHostPath)
	}
	items := pkiFiles(container)
	files := []string{clusterCA + ".key"} // signs the shared serving certificate; it is not stored
	for _, it := range items {
		files = append(files, it.Path)
	}
	c.Waiting("the API server's credentials from %s on %s", kubeadmPKI, node)
	out, err := runAgent(ctx, c, agentJob{Node: node, Purpose: "read-apiserver-credentials", Script: readFilesScript(kubeadmPKI, files)})
	if err != nil {
		return err
	}
	read, err := parseFiles(out)
	if err != nil {
		return fmt.Errorf("reading %s on %s: %w", kubeadmPKI, node, err)
	}
	ca, err := pki.ParseCA(read[clusterCA+".crt"], read[clusterCA+".key"])
	if err != nil {
		return fmt.Errorf("the cluster CA in %s on %s: %w", kubeadmPKI, node, err)
	}
	names, ips, err := servingNames(ctx, c)
	if err != nil {
		return err
	}
	serving, err := sharedServingCert(ca, read[servingCert], names, ips, time.Now())
	if err != nil {
		return err
	}
	data := map[string][]byte{}
	for _, it := range items {
		data[it.Key] = read[it.Path]
	}
	data[servingCert] = pki.EncodeCert(serving.Cert)
	if data[servingKey], err = pki.EncodeKey(serving.Key); err != nil {
		return err
	}
	return applyTyped(ctx, c.Dynamic, &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: APIServerSecret, Namespace: Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": FieldManager, "component": "kube-apiserver"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	})
}

// credentialsSource names a node and the API server container whose flags
// say which of that node's files to store: a static pod while one is left;
// after the pivot (a rerun for a new node, or a certificate near expiry),
// the DaemonSet's own template, the same flags, and kubeadm's files, which
// stay on every node.
func credentialsSource(ctx context.Context, c *Context) (string, *corev1.Container, error) {
	static, err := (&createWorkload{component: "kube-apiserver"}).sourcePod(ctx, c)
	if err == nil {
		return static.Spec.NodeName, &static.Spec.Containers[0], nil
	}
	ds, dsErr := c.Client.AppsV1().DaemonSets(Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if dsErr != nil || len(c.Cluster.ControlPlane) == 0 {
		return "", nil, err
	}
	return c.Cluster.ControlPlane[0], &ds.Spec.Template.Spec.Containers[0], nil
}

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
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: ControlPlaneLabel})
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

// fileMarker starts each file in a node agent's output.
const fileMarker = "@@selfhost-file "

// readFilesScript prints each file under dir, base64-encoded after a marker
// line. The agent's log is the only way back from the node through the API;
// it lives on the node that already holds the files, and goes with the pod.
func readFilesScript(dir string, files []string) string {
	// Every file is checked before any is printed, so a failure's output,
	// which the error shows, holds no key.
	return fmt.Sprintf(`cd %[1]s
for f in %[2]s; do [ -r "$f" ] || { echo "%[1]s/$f is missing"; exit 1; }; done
for f in %[2]s; do echo "%[3]s$f"; base64 "$f"; done`, dir, strings.Join(files, " "), fileMarker)
}

// parseFiles decodes readFilesScript's output into file -> content.
func parseFiles(out string) (map[string][]byte, error) {
	files := map[string][]byte{}
	var name string
	var b64 strings.Builder
	flush := func() error {
		if name == "" {
			return nil
		}
		data, err := base64.StdEncoding.DecodeString(b64.String())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		files[name] = data
		b64.Reset()
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if f, ok := strings.CutPrefix(line, fileMarker); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = f
			continue
		}
		b64.WriteString(line)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return files, nil
}
