package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// What a control plane is expected to be.
const (
	ExpectSelfHosted = "self-hosted"
	// ExpectStatic is a kubeadm-style control plane, as revert leaves it.
	ExpectStatic = "static"
)

// staticChecks are the checks of a static control plane that only read the API.
func (c *cluster) staticChecks() []check.Checker {
	checks := []check.Checker{check.Named("nodes", c.checkNodes)}
	for _, comp := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		checks = append(checks, check.Named("static "+comp, func(context.Context) (string, error) { return c.checkStatic(comp) }))
	}
	return append(checks,
		check.Named("no self-hosted workloads", c.checkNoWorkloads),
		check.Named("no checkpoints", c.checkNoCheckpoints),
		check.Named("flannel", c.checkFlannel))
}

// checkStatic wants a Ready static pod of component on every control-plane node.
func (c *cluster) checkStatic(component string) (string, error) {
	ready := map[string]bool{}
	for i := range c.pods {
		p := &c.pods[i]
		if p.Labels["component"] == component && checkpoint.IsStaticMirror(p) && checkpoint.CheckpointOf(p) == "" && kube.PodReady(p) {
			ready[p.Spec.NodeName] = true
		}
	}
	var missing []string
	for _, n := range c.controlPlane {
		if !ready[n] {
			missing = append(missing, n)
		}
	}
	if len(c.controlPlane) == 0 || len(missing) > 0 {
		return "", fmt.Errorf("no Ready static pod on %s", strings.Join(missing, ", "))
	}
	return fmt.Sprintf("a Ready static pod on each of %d control-plane nodes", len(c.controlPlane)), nil
}

// checkNoWorkloads wants no self-hosted control-plane workload and no checkpointer.
func (c *cluster) checkNoWorkloads(ctx context.Context) (string, error) {
	apps := c.client.AppsV1()
	var left []string
	for _, ds := range []string{"kube-apiserver", CheckpointerDaemonSet} {
		if _, err := apps.DaemonSets(kube.Namespace).Get(ctx, ds, metav1.GetOptions{}); err == nil {
			left = append(left, "DaemonSet "+ds)
		} else if !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("cannot read DaemonSet %s: %w", ds, err)
		}
	}
	for _, d := range []string{"kube-controller-manager", "kube-scheduler"} {
		if _, err := apps.Deployments(kube.Namespace).Get(ctx, d, metav1.GetOptions{}); err == nil {
			left = append(left, "Deployment "+d)
		} else if !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("cannot read Deployment %s: %w", d, err)
		}
	}
	if len(left) > 0 {
		return "", fmt.Errorf("still present: %s", strings.Join(left, ", "))
	}
	return "no kube-apiserver DaemonSet, no kube-controller-manager or kube-scheduler Deployment, no pod-checkpointer", nil
}

// checkNoCheckpoints wants no checkpoint running: none can, with no checkpointer.
func (c *cluster) checkNoCheckpoints(context.Context) (string, error) {
	var running []string
	for i := range c.pods {
		if p := &c.pods[i]; checkpoint.CheckpointOf(p) != "" {
			running = append(running, p.Name)
		}
	}
	if len(running) > 0 {
		sort.Strings(running)
		return "", fmt.Errorf("checkpoints still run: %s", strings.Join(running, ", "))
	}
	return "no checkpoint runs on any node", nil
}
