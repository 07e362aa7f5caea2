package pivot

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
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

// storeAPIServerCredentials reads the files the API server's flags name from
// one control-plane node and stores them in Secret kube-system/kube-apiserver.
// kubeadm's serving certificate names one node, so a new one is issued from
// the cluster CA for every control-plane node's names and addresses.
type storeAPIServerCredentials struct{}

func (*storeAPIServerCredentials) Name() string {
	return "Storing the API server's credentials in Secret " + kube.Namespace + "/" + APIServerSecret
}

func (*storeAPIServerCredentials) Done(ctx context.Context, c *Context) (bool, error) {
	s, err := c.Client.CoreV1().Secrets(kube.Namespace).Get(ctx, APIServerSecret, metav1.GetOptions{})
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
		ObjectMeta: metav1.ObjectMeta{Name: APIServerSecret, Namespace: kube.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": FieldManager, "component": "kube-apiserver"}},
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
	ds, dsErr := c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if dsErr != nil || len(c.Cluster.ControlPlane) == 0 {
		return "", nil, err
	}
	return c.Cluster.ControlPlane[0], &ds.Spec.Template.Spec.Containers[0], nil
}
