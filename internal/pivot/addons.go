package pivot

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
)

// installCheckpointer applies pod-checkpointer and waits until it is Ready on
// every control-plane node: nothing static is removed before it can recover.
type installCheckpointer struct{}

func (*installCheckpointer) Name() string { return "Installing pod-checkpointer" }

// legacyCheckpointerToken is the token Secret that never expires, which
// earlier releases gave the checkpointer; deleting it revokes the token.
const legacyCheckpointerToken = "pod-checkpointer-token"

func (*installCheckpointer) Done(ctx context.Context, c *Context) (bool, error) {
	if held, err := templatesHeld(ctx, c, "pod-checkpointer.yaml"); !held || err != nil {
		return false, err
	}
	if _, err := c.Client.CoreV1().Secrets(kube.Namespace).Get(ctx, legacyCheckpointerToken, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return false, err
	}
	ds, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, "pod-checkpointer", metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return daemonSetReady(ds, len(c.Cluster.ControlPlane)) == "", nil
}

func (a *installCheckpointer) Execute(ctx context.Context, c *Context) error {
	if err := applyTemplates(ctx, c, "pod-checkpointer.yaml"); err != nil {
		return err
	}
	if err := waitDaemonSet(ctx, c, kube.Namespace, "pod-checkpointer", len(c.Cluster.ControlPlane)); err != nil {
		return err
	}
	// Only now: until the new pods run, the old ones and their copies use it.
	err := c.Client.CoreV1().Secrets(kube.Namespace).Delete(ctx, legacyCheckpointerToken, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot revoke the checkpointer's old token (Secret %s/%s): %w", kube.Namespace, legacyCheckpointerToken, err)
	}
	return nil
}

// installCNI applies flannel unless another CNI already runs, and waits
// until it runs on every node.
type installCNI struct{}

func (*installCNI) Name() string { return "Installing the pod network (flannel)" }

func (*installCNI) Done(ctx context.Context, c *Context) (bool, error) {
	want, err := wantFlannel(ctx, c)
	if err != nil || !want {
		return !want, err
	}
	return templatesHeld(ctx, c, "kube-flannel.yaml")
}

func (*installCNI) Execute(ctx context.Context, c *Context) error {
	if err := applyTemplates(ctx, c, "kube-flannel.yaml"); err != nil {
		return err
	}
	return waitDaemonSet(ctx, c, "kube-flannel", "kube-flannel-ds", nodeCount(ctx, c))
}

// installAddons adopts kube-proxy and CoreDNS from kubeadm, and installs
// metrics-server and the apps namespace.
type installAddons struct{}

func (*installAddons) Name() string { return "Installing add-ons" }

func (*installAddons) names(c *Context) []string {
	names := []string{"kube-proxy.yaml", "coredns.yaml", "metrics-server.yaml"}
	if c.Cluster.AppsNamespace != "" {
		names = append(names, "namespace.yaml")
	}
	return names
}

func (a *installAddons) Done(ctx context.Context, c *Context) (bool, error) {
	return templatesHeld(ctx, c, a.names(c)...)
}

func (a *installAddons) Execute(ctx context.Context, c *Context) error {
	if err := applyTemplates(ctx, c, a.names(c)...); err != nil {
		return err
	}
	return waitDaemonSet(ctx, c, kube.Namespace, "kube-proxy", nodeCount(ctx, c))
}

// templateObjects renders embedded templates into the objects they hold.
func templateObjects(c *Context, templates ...string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, t := range templates {
		data, err := render.RenderTemplate(t, values(c))
		if err != nil {
			return nil, err
		}
		o, err := ssa.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", t, err)
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

func applyTemplates(ctx context.Context, c *Context, templates ...string) error {
	objs, err := templateObjects(c, templates...)
	if err != nil {
		return err
	}
	return ssa.Apply(ctx, c.Dynamic, objs...)
}

// templatesHeld reports whether the cluster already holds what these templates render.
func templatesHeld(ctx context.Context, c *Context, templates ...string) (bool, error) {
	objs, err := templateObjects(c, templates...)
	if err != nil {
		return false, err
	}
	return ssa.Holds(ctx, c.Dynamic, objs...)
}

func nodeCount(ctx context.Context, c *Context) int {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	return len(nodes.Items)
}

// wantFlannel: install flannel unless every node is Ready without it,
// which means another CNI already runs.
func wantFlannel(ctx context.Context, c *Context) (bool, error) {
	if _, err := c.Client.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{}); err == nil {
		return true, nil
	}
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, n := range nodes.Items {
		if !kube.NodeReady(&n) {
			return true, nil
		}
	}
	return false, nil
}

func values(c *Context) render.Values { return render.ValuesFor(c.Cluster.Config) }
