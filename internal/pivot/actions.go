package pivot

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Actions is the whole pivot, in order.
func Actions(c *Cluster, o Options) []Action {
	// A pod network first: without one the nodes are NotReady.
	actions := []Action{&installCNI{}, &installCheckpointer{}}
	for _, comp := range Components {
		for _, n := range c.ControlPlane {
			actions = append(actions, &shareStaticPort{component: comp, node: n})
		}
		if comp == "kube-apiserver" && o.Certs == CertsSecret {
			actions = append(actions, &storeAPIServerCredentials{})
		}
		actions = append(actions, &createWorkload{component: comp})
		for _, n := range c.ControlPlane {
			actions = append(actions, &removeStatic{component: comp, node: n})
		}
	}
	return append(actions, &installAddons{})
}

// installCheckpointer applies pod-checkpointer and waits until it is Ready on
// every control-plane node: nothing static is removed before it can recover.
type installCheckpointer struct{}

func (*installCheckpointer) Name() string { return "Installing pod-checkpointer" }

func (*installCheckpointer) Done(ctx context.Context, c *Context) (bool, error) {
	if held, err := templatesHeld(ctx, c, "pod-checkpointer.yaml"); !held || err != nil {
		return false, err
	}
	ds, err := c.Client.AppsV1().DaemonSets(Namespace).Get(ctx, "pod-checkpointer", metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return daemonSetReady(ds, len(c.Cluster.ControlPlane)) == "", nil
}

func (a *installCheckpointer) Execute(ctx context.Context, c *Context) error {
	if err := applyTemplates(ctx, c, "pod-checkpointer.yaml"); err != nil {
		return err
	}
	return waitDaemonSet(ctx, c, Namespace, "pod-checkpointer", len(c.Cluster.ControlPlane))
}

// shareStaticPort rewrites one node's static pod to use --permit-port-sharing,
// so the self-hosted pod can bind beside it. The kubelet restarts it once.
type shareStaticPort struct{ component, node string }

func (a *shareStaticPort) Name() string {
	return fmt.Sprintf("Letting static %s on %s share its port", a.component, a.node)
}

func (a *shareStaticPort) Done(ctx context.Context, c *Context) (bool, error) {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	if err != nil {
		return false, err
	}
	return m == nil || SharesPort(m), nil
}

func (a *shareStaticPort) Execute(ctx context.Context, c *Context) error {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	if err != nil || m == nil {
		return err
	}
	static, err := PortSharingStatic(a.component, m)
	if err != nil {
		return err
	}
	manifest, err := encodeYAML(static)
	if err != nil {
		return err
	}
	file := a.component + ".yaml"
	if _, err := runAgent(ctx, c, agentJob{Node: a.node, Purpose: "share-port-" + a.component, Script: replaceStaticScript(file), Payload: map[string]string{file: manifest}}); err != nil {
		return err
	}
	c.Waiting("the kubelet on %s to restart static %s with port sharing, Ready", a.node, a.component)
	if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		m, err := MirrorPod(ctx, c.Client, a.component, a.node)
		return err == nil && m != nil && SharesPort(m) && kube.PodReady(m), nil
	}); err != nil {
		return fmt.Errorf("static %s on %s did not come back Ready with port sharing: %w", a.component, a.node, err)
	}
	return waitAPIHealthy(ctx, c)
}

// createWorkload creates the self-hosted DaemonSet or Deployment from the
// static pod's own spec and waits until a pod is Ready on every
// control-plane node (and, for the API server, checkpointed there).
type createWorkload struct{ component string }

func (a *createWorkload) Name() string {
	if a.component == "kube-apiserver" {
		return "Running kube-apiserver as a DaemonSet"
	}
	return "Running " + a.component + " as a Deployment"
}

func (a *createWorkload) Done(ctx context.Context, c *Context) (bool, error) {
	return a.ready(ctx, c) == "", nil
}

// ready says what is still missing, or "" when the workload is in place.
func (a *createWorkload) ready(ctx context.Context, c *Context) string {
	n := len(c.Cluster.ControlPlane)
	if a.component == "kube-apiserver" {
		ds, err := c.Client.AppsV1().DaemonSets(Namespace).Get(ctx, a.component, metav1.GetOptions{})
		if err != nil {
			return "the DaemonSet to exist"
		}
		if why := daemonSetReady(ds, n); why != "" {
			return why
		}
		return apiServerCheckpoints(ctx, c)
	}
	d, err := c.Client.AppsV1().Deployments(Namespace).Get(ctx, a.component, metav1.GetOptions{})
	if err != nil {
		return "the Deployment to exist"
	}
	if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != int32(n) || d.Status.ReadyReplicas != int32(n) {
		return fmt.Sprintf("%d of %d replicas updated and Ready", d.Status.ReadyReplicas, n)
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
	meta := metav1.ObjectMeta{Name: a.component, Namespace: Namespace, Labels: map[string]string{"tier": "control-plane", "component": a.component}}
	selector := &metav1.LabelSelector{MatchLabels: SelectorLabels(a.component)}
	if a.component == "kube-apiserver" {
		return applyTyped(ctx, c.Dynamic, &appsv1.DaemonSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
			ObjectMeta: meta,
			Spec: appsv1.DaemonSetSpec{Selector: selector, Template: tmpl, UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intOrPercent(1))},
			}},
		})
	}
	return a.applyDeployment(ctx, c, meta, selector, tmpl)
}

// exists reports whether the workload is in the API.
func (a *createWorkload) exists(ctx context.Context, c *Context) bool {
	var err error
	if a.component == "kube-apiserver" {
		_, err = c.Client.AppsV1().DaemonSets(Namespace).Get(ctx, a.component, metav1.GetOptions{})
	} else {
		_, err = c.Client.AppsV1().Deployments(Namespace).Get(ctx, a.component, metav1.GetOptions{})
	}
	return err == nil
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

func (a *createWorkload) applyDeployment(ctx context.Context, c *Context, meta metav1.ObjectMeta, selector *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) error {
	tmpl.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: "kubernetes.io/hostname", LabelSelector: selector}},
	}}
	// One replica per node and no surge: a surged pod would have nowhere to go.
	err := applyTyped(ctx, c.Dynamic, &appsv1.Deployment{
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
	return applyTemplates(ctx, c, a.component+"-disruption.yaml")
}

// removeStatic moves one node's static manifest into the backup directory,
// then waits for its mirror pod to go and the API to stay healthy.
type removeStatic struct{ component, node string }

func (a *removeStatic) Name() string {
	return fmt.Sprintf("Removing static %s from %s", a.component, a.node)
}

func (a *removeStatic) Done(ctx context.Context, c *Context) (bool, error) {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	return err == nil && m == nil, err
}

func (a *removeStatic) Execute(ctx context.Context, c *Context) error {
	file := a.component + ".yaml"
	if _, err := runAgent(ctx, c, agentJob{Node: a.node, Purpose: "remove-" + a.component, Script: removeStaticScript(file)}); err != nil {
		return err
	}
	c.Waiting("the mirror pod of %s on %s to vanish", a.component, a.node)
	if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		m, err := MirrorPod(ctx, c.Client, a.component, a.node)
		return err == nil && m == nil, nil
	}); err != nil {
		return fmt.Errorf("the mirror pod of %s on %s is still there: %w", a.component, a.node, err)
	}
	return waitAPIHealthy(ctx, c)
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
	return waitDaemonSet(ctx, c, Namespace, "kube-proxy", nodeCount(ctx, c))
}

// templateObjects renders embedded templates into the objects they hold.
func templateObjects(c *Context, templates ...string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, t := range templates {
		data, err := render.RenderTemplate(t, values(c))
		if err != nil {
			return nil, err
		}
		o, err := decodeManifest(data)
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
	return apply(ctx, c.Dynamic, objs...)
}

// templatesHeld reports whether the cluster already holds what these templates render.
func templatesHeld(ctx context.Context, c *Context, templates ...string) (bool, error) {
	objs, err := templateObjects(c, templates...)
	if err != nil {
		return false, err
	}
	return holds(ctx, c.Dynamic, objs...)
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

// apiServerCheckpoints says which node lacks an inactive API server checkpoint.
func apiServerCheckpoints(ctx context.Context, c *Context) string {
	pods, err := c.Client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver")})
	if err != nil {
		return "the API server pods to be listed"
	}
	byNode := map[string]string{}
	for _, p := range pods.Items {
		byNode[p.Spec.NodeName] = p.Name
	}
	for _, n := range c.Cluster.ControlPlane {
		st, err := checkpoint.ReadNodeStatus(ctx, c.Client.CoreV1().ConfigMaps(Namespace), n)
		if err != nil {
			return fmt.Sprintf("pod-checkpointer on %s to report", n)
		}
		if !st.HasInactive(byNode[n]) {
			return fmt.Sprintf("an inactive checkpoint of %s on %s", byNode[n], n)
		}
	}
	return ""
}

func daemonSetReady(ds *appsv1.DaemonSet, want int) string {
	st := ds.Status
	if st.ObservedGeneration < ds.Generation || int(st.DesiredNumberScheduled) < want ||
		st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberReady != st.DesiredNumberScheduled {
		return fmt.Sprintf("%d of %d pods updated and Ready", st.NumberReady, max(want, int(st.DesiredNumberScheduled)))
	}
	return ""
}

func waitDaemonSet(ctx context.Context, c *Context, ns, name string, want int) error {
	var why string
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		ds, err := c.Client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			why = "the DaemonSet to exist"
			return false, nil
		}
		why = daemonSetReady(ds, want)
		if why != "" {
			c.Waiting("DaemonSet %s/%s: %s", ns, name, why)
		}
		return why == "", nil
	})
	if err != nil {
		return fmt.Errorf("DaemonSet %s/%s not ready (%s): %w", ns, name, why, err)
	}
	return nil
}

// waitAPIHealthy wants /readyz through the load balancer to answer ok five
// times in a row, a second apart, before the next node is touched.
func waitAPIHealthy(ctx context.Context, c *Context) error {
	c.Waiting("the API to answer /readyz through %s five times in a row", c.Cluster.Endpoint.Host)
	streak := 0
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			streak = 0
			return false, nil
		}
		streak++
		return streak >= 5, nil
	})
}
