package pivot

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/nodecreds"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
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

// renewBefore is how close to expiry a certificate in the Secret may be
// before a rerun of bootstrap reissues it.
const renewBefore = 30 * 24 * time.Hour

// credentialsAgent is the ServiceAccount of the node agent that stores the
// credentials; it exists only while that agent runs.
const credentialsAgent = "selfhost-credentials-agent"

// storeAPIServerCredentials has a node agent on a control-plane node store
// the files the API server's flags name in Secret kube-system/kube-apiserver.
// kubeadm's serving certificate names one node, so the agent issues one for
// every control-plane node's names and addresses from the cluster CA, and it
// reissues any certificate near expiry: the CA keys never leave the node.
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
	return credentialsProblem(s, names, ips, time.Now()) == "", nil
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
	names, ips, err := servingNames(ctx, c)
	if err != nil {
		return err
	}
	args := []string{nodecreds.Command, "--pki-dir", kubeadmPKI, "--namespace", kube.Namespace, "--secret", APIServerSecret,
		"--field-manager", ssa.FieldManager, "--serving-cert", servingCert, "--serving-ca", clusterCA + ".crt", "--renew-before", renewBefore.String()}
	for _, it := range pkiFiles(container) {
		args = append(args, "--item", it.Key+"="+it.Path)
	}
	for _, n := range names {
		args = append(args, "--serving-dns", n)
	}
	for _, ip := range ips {
		args = append(args, "--serving-ip", ip.String())
	}
	if err := grantCredentialsAgent(ctx, c); err != nil {
		return err
	}
	defer revokeCredentialsAgent(context.WithoutCancel(ctx), c)
	c.Waiting("the node agent on %s to store %s/{%s,...} in the Secret", node, kubeadmPKI, servingCert)
	_, err = runAgent(ctx, c, agentJob{Node: node, Purpose: "store-apiserver-credentials", Args: args})
	return err
}

// grantCredentialsAgent lets the agent read and apply Secret kube-apiserver,
// and no other object; the Secret is created empty first, since a create
// cannot be limited to one name.
func grantCredentialsAgent(ctx context.Context, c *Context) error {
	meta := func(kind, apiVersion string) (metav1.TypeMeta, metav1.ObjectMeta) {
		return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}, metav1.ObjectMeta{Name: credentialsAgent, Namespace: kube.Namespace, Labels: agentLabels}
	}
	secrets := c.Client.CoreV1().Secrets(kube.Namespace)
	if _, err := secrets.Get(ctx, APIServerSecret, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: APIServerSecret, Labels: credentialsLabels}, Type: corev1.SecretTypeOpaque}, metav1.CreateOptions{FieldManager: ssa.FieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cannot create Secret %s/%s: %w", kube.Namespace, APIServerSecret, err)
		}
	} else if err != nil {
		return err
	}
	saType, saMeta := meta("ServiceAccount", "v1")
	roleType, roleMeta := meta("Role", "rbac.authorization.k8s.io/v1")
	bindingType, bindingMeta := meta("RoleBinding", "rbac.authorization.k8s.io/v1")
	for _, obj := range []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: saType, ObjectMeta: saMeta, AutomountServiceAccountToken: ptr.To(false)},
		&rbacv1.Role{TypeMeta: roleType, ObjectMeta: roleMeta, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{APIServerSecret}, Verbs: []string{"get", "patch"},
		}}},
		&rbacv1.RoleBinding{TypeMeta: bindingType, ObjectMeta: bindingMeta,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: credentialsAgent},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: credentialsAgent, Namespace: kube.Namespace}}},
	} {
		if err := ssa.ApplyTyped(ctx, c.Dynamic, obj); err != nil {
			return err
		}
	}
	return nil
}

// revokeCredentialsAgent removes the agent's account and its grant.
func revokeCredentialsAgent(ctx context.Context, c *Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = c.Client.RbacV1().RoleBindings(kube.Namespace).Delete(ctx, credentialsAgent, metav1.DeleteOptions{})
	_ = c.Client.RbacV1().Roles(kube.Namespace).Delete(ctx, credentialsAgent, metav1.DeleteOptions{})
	_ = c.Client.CoreV1().ServiceAccounts(kube.Namespace).Delete(ctx, credentialsAgent, metav1.DeleteOptions{})
}

// credentialsLabels mark Secret kube-apiserver.
var credentialsLabels = map[string]string{"app.kubernetes.io/managed-by": ssa.FieldManager, "component": "kube-apiserver"}

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
