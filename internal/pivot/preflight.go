package pivot

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// Supported Kubernetes versions: --permit-port-sharing on every component
// and the API fields we use set the floor; the newest release tested sets the roof.
var (
	minVersion = version.MustParseGeneric("v1.33.0")
	maxMinor   = uint(37)
)

// permissions are what the pivot does through the API.
var permissions = []authorizationv1.ResourceAttributes{
	{Verb: "create", Group: "apps", Resource: "daemonsets", Namespace: kube.Namespace},
	{Verb: "patch", Group: "apps", Resource: "daemonsets", Namespace: kube.Namespace},
	{Verb: "create", Group: "apps", Resource: "deployments", Namespace: kube.Namespace},
	{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: kube.Namespace},
	{Verb: "create", Resource: "pods", Namespace: kube.Namespace},
	{Verb: "delete", Resource: "pods", Namespace: kube.Namespace},
	{Verb: "get", Resource: "pods", Subresource: "log", Namespace: kube.Namespace},
	{Verb: "create", Resource: "configmaps", Namespace: kube.Namespace},
	{Verb: "create", Resource: "secrets", Namespace: kube.Namespace},
	{Verb: "delete", Resource: "secrets", Namespace: kube.Namespace},
	{Verb: "create", Resource: "serviceaccounts", Namespace: kube.Namespace},
	{Verb: "delete", Resource: "serviceaccounts", Namespace: kube.Namespace},
	{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "roles", Namespace: kube.Namespace},
	{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "rolebindings", Namespace: kube.Namespace},
	{Verb: "create", Group: "policy", Resource: "poddisruptionbudgets", Namespace: kube.Namespace},
	{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
	{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
	{Verb: "create", Resource: "namespaces"},
	{Verb: "create", Group: "apiregistration.k8s.io", Resource: "apiservices"},
	{Verb: "list", Resource: "nodes"},
}

// Preflight checks everything the pivot needs, changing nothing, and stops
// at the first failure. A cluster that is partly pivoted passes, so an
// interrupted run can resume.
func Preflight(ctx context.Context, client kubernetes.Interface, c *Cluster) error {
	_, err := check.UntilFailure(ctx, preflightChecks(client, c)...)
	return err
}

// preflightChecks are bootstrap's checks, the most basic first.
func preflightChecks(client kubernetes.Interface, c *Cluster) []check.Checker {
	p := &preflight{client: client, cluster: c}
	return []check.Checker{
		check.Named("version", p.checkVersion),
		check.Named("permissions", p.checkPermissions),
		check.Named("control-plane shape", p.checkShape),
	}
}

// preflight is what bootstrap's checks read.
type preflight struct {
	client  kubernetes.Interface
	cluster *Cluster
}

func (p *preflight) checkVersion(context.Context) (string, error) {
	info, err := p.client.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("cannot read the server version: %w", err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return "", fmt.Errorf("the server reports version %q, which does not parse", info.GitVersion)
	}
	if v.LessThan(minVersion) || v.Major() != 1 || v.Minor() > maxMinor {
		return "", fmt.Errorf("Kubernetes %s is not supported: bootstrap supports v1.33 to v1.%d", info.GitVersion, maxMinor)
	}
	return "Kubernetes " + info.GitVersion, nil
}

func (p *preflight) checkPermissions(ctx context.Context) (string, error) {
	var missing []string
	for _, attr := range permissions {
		r, err := p.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("cannot check permissions: %w", err)
		}
		if !r.Status.Allowed {
			what := attr.Resource
			if attr.Subresource != "" {
				what += "/" + attr.Subresource
			}
			if attr.Group != "" {
				what += "." + attr.Group
			}
			if attr.Namespace != "" {
				what += " in " + attr.Namespace
			}
			missing = append(missing, attr.Verb+" "+what)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("you may not %s; bootstrap needs a cluster administrator", strings.Join(missing, ", "))
	}
	return fmt.Sprintf("allowed all %d actions bootstrap takes", len(permissions)), nil
}

// checkShape wants, for every component on every control-plane node, either
// kubeadm's static pod or the self-hosted workload.
func (p *preflight) checkShape(ctx context.Context) (string, error) {
	c := p.cluster
	if len(c.ControlPlane) == 0 {
		return "", fmt.Errorf("no node carries the %s label: this is not a kubeadm-shaped cluster", kube.ControlPlaneLabel)
	}
	for _, comp := range Components {
		hosted, err := workloadExists(ctx, p.client, comp)
		if err != nil {
			return "", err
		}
		for _, n := range c.ControlPlane {
			if c.Mirror[comp][n] == nil && !hosted {
				return "", fmt.Errorf("control-plane node %s runs no static %s and no self-hosted one exists: this is not a kubeadm-shaped control plane", n, comp)
			}
		}
	}
	return fmt.Sprintf("%s static or self-hosted on all %d control-plane nodes", strings.Join(Components, ", "), len(c.ControlPlane)), nil
}

func workloadExists(ctx context.Context, client kubernetes.Interface, component string) (bool, error) {
	var err error
	if component == "kube-apiserver" {
		_, err = client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, component, metav1.GetOptions{})
	} else {
		_, err = client.AppsV1().Deployments(kube.Namespace).Get(ctx, component, metav1.GetOptions{})
	}
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("cannot read the %s workload: %w", component, err)
}
