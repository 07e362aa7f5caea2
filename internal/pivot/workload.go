package pivot

import (
	"context"
	"fmt"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// createWorkload creates the self-hosted DaemonSet or Deployment from the
// static pod's own spec and waits until a pod is Ready on every
// control-plane node (and, for the API server, checkpointed there).
type createWorkload struct{ component string }

// workload is how one component runs self-hosted.
type workload interface {
	// kind is the workload's kind, for people.
	kind() string
	// get reports whether the workload exists and, if so, what it still
	// lacks on n control-plane nodes ("" when nothing).
	get(ctx context.Context, c *Context, name string, n int) (exists bool, why string)
	// apply creates or updates it around a pod template.
	apply(ctx context.Context, c *Context, meta metav1.ObjectMeta, selector *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) error
}

// workloadOf is the API server's DaemonSet, one pod per control-plane
// node, and a Deployment for each other component.
func workloadOf(component string) workload {
	if component == "kube-apiserver" {
		return daemonSetWorkload{}
	}
	return deploymentWorkload{}
}

func (a *createWorkload) Name() string {
	return "Running " + a.component + " as a " + workloadOf(a.component).kind()
}

func (a *createWorkload) Done(ctx context.Context, c *Context) (bool, error) {
	return a.ready(ctx, c) == "", nil
}

// ready says what is still missing, or "" when the workload is in place.
func (a *createWorkload) ready(ctx context.Context, c *Context) string {
	w := workloadOf(a.component)
	exists, why := w.get(ctx, c, a.component, len(c.Cluster.ControlPlane))
	switch {
	case !exists:
		return "the " + w.kind() + " to exist"
	case why != "":
		return why
	case a.component == "kube-apiserver":
		return apiServerCheckpoints(ctx, c)
	}
	return ""
}

func (a *createWorkload) Execute(ctx context.Context, c *Context) error {
	source, err := a.sourcePod(ctx, c)
	switch {
	case err == nil:
		if err := a.apply(ctx, c, source); err != nil {
			return err
		}
	case a.exists(ctx, c):
		// Every static pod is gone already: the workload is in place and
		// only has to become ready, e.g. after pod-checkpointer was reinstalled.
	default:
		return err
	}
	return wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		why := a.ready(ctx, c)
		if why != "" {
			c.Waiting("%s: %s", a.component, why)
		}
		return why == "", nil
	})
}

// apply creates or updates the workload from a static pod's spec.
func (a *createWorkload) apply(ctx context.Context, c *Context, source *corev1.Pod) error {
	tmpl, err := SelfHostedTemplate(a.component, source)
	if err != nil {
		return err
	}
	if a.component == "kube-apiserver" && c.Options.Certs == CertsSecret {
		if err := MountCertsSecret(&tmpl, APIServerSecret); err != nil {
			return err
		}
	}
	meta := metav1.ObjectMeta{Name: a.component, Namespace: kube.Namespace, Labels: map[string]string{"tier": "control-plane", "component": a.component}}
	selector := &metav1.LabelSelector{MatchLabels: SelectorLabels(a.component)}
	return workloadOf(a.component).apply(ctx, c, meta, selector, tmpl)
}

// exists reports whether the workload is in the API.
func (a *createWorkload) exists(ctx context.Context, c *Context) bool {
	exists, _ := workloadOf(a.component).get(ctx, c, a.component, len(c.Cluster.ControlPlane))
	return exists
}

// sourcePod is a static pod to copy, from any node that still has one.
func (a *createWorkload) sourcePod(ctx context.Context, c *Context) (*corev1.Pod, error) {
	for _, n := range c.Cluster.ControlPlane {
		if m, err := MirrorPod(ctx, c.Client, a.component, n); err != nil || m != nil {
			return m, err
		}
	}
	return nil, fmt.Errorf("no static %s is left to copy and its workload is not ready; restore one from %s on a control-plane node", a.component, BackupDir)
}

// daemonSetWorkload runs a pod on every control-plane node, replaced one node at a time.
type daemonSetWorkload struct{}

func (daemonSetWorkload) kind() string { return "DaemonSet" }

func (daemonSetWorkload) get(ctx context.Context, c *Context, name string, n int) (bool, string) {
	ds, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, ""
	}
	return true, daemonSetReady(ds, n)
}

func (daemonSetWorkload) apply(ctx context.Context, c *Context, meta metav1.ObjectMeta, selector *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) error {
	return ssa.ApplyTyped(ctx, c.Dynamic, &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: meta,
		Spec:       appsv1.DaemonSetSpec{Selector: selector, Template: tmpl, UpdateStrategy: DaemonSetStrategy()},
	})
}

// DaemonSetStrategy is how the self-hosted DaemonSets roll out: one node at
// a time, the old pod first. upgrade surges for its own rollout, then
// restores this.
func DaemonSetStrategy() appsv1.DaemonSetUpdateStrategy {
	return appsv1.DaemonSetUpdateStrategy{
		Type:          appsv1.RollingUpdateDaemonSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intOrPercent(1))},
	}
}

// deploymentWorkload runs one replica per control-plane node, kept apart by
// hostname anti-affinity, with a PodDisruptionBudget.
type deploymentWorkload struct{}

func (deploymentWorkload) kind() string { return "Deployment" }

func (deploymentWorkload) get(ctx context.Context, c *Context, name string, n int) (bool, string) {
	d, err := c.Client.AppsV1().Deployments(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, ""
	}
	if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != int32(n) || d.Status.ReadyReplicas != int32(n) {
		return true, fmt.Sprintf("%d of %d replicas updated and Ready", d.Status.ReadyReplicas, n)
	}
	return true, ""
}

func (deploymentWorkload) apply(ctx context.Context, c *Context, meta metav1.ObjectMeta, selector *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) error {
	tmpl.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: "kubernetes.io/hostname", LabelSelector: selector}},
	}}
	// One replica per node and no surge: a surged pod would have nowhere to go.
	err := ssa.ApplyTyped(ctx, c.Dynamic, &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(len(c.Cluster.ControlPlane))),
			Selector: selector,
			Template: tmpl,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intOrPercent(0)), MaxUnavailable: ptr.To(intOrPercent(1)),
			}},
		},
	})
	if err != nil {
		return err
	}
	return applyTemplates(ctx, c, meta.Name+"-disruption.yaml")
}
