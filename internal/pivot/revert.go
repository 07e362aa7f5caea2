package pivot

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/nodecreds"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// StaticLabel marks a control-plane node whose static control plane runs
// again; the API server DaemonSet leaves such a node during a revert.
const StaticLabel = "selfhost.dev/static-control-plane"

// RevertActions turn the self-hosted control plane back into static pods,
// in place, one node at a time: each node's static pods start beside the
// self-hosted ones (they share the ports) and are Ready before the node
// leaves the API server DaemonSet. The workloads go at the end, then the
// checkpointer and every checkpoint.
func RevertActions(c *Cluster) []Action {
	actions := []Action{&holdAPIServerPods{}}
	for _, n := range c.ControlPlane {
		actions = append(actions, &restoreStatic{node: n}, &leaveDaemonSet{node: n})
	}
	return append(actions, &removeWorkloads{}, &removeCheckpointer{}, &forgetSelfHosting{})
}

// holdAPIServerPods stops the DaemonSet from replacing its pods and makes
// it leave every node labelled StaticLabel. With OnDelete the template
// change replaces no pod: each leaves only when its node is labelled.
type holdAPIServerPods struct{}

func (*holdAPIServerPods) Name() string {
	return "Keeping each API server pod until its node runs a static one"
}

func (*holdAPIServerPods) Done(ctx context.Context, c *Context) (bool, error) {
	ds, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	a := ds.Spec.Template.Spec.Affinity
	held := ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType && a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil
	return held, nil
}

func (*holdAPIServerPods) Execute(ctx context.Context, c *Context) error {
	patch := fmt.Sprintf(`{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null},"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":%q,"operator":"DoesNotExist"}]}]}}}}}}}`, StaticLabel)
	_, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Patch(ctx, "kube-apiserver", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: ssa.FieldManager})
	if err != nil {
		return fmt.Errorf("cannot hold the API server DaemonSet's pods: %w", err)
	}
	return nil
}

// restoreStatic writes a node's static control plane from the current
// self-hosted specs, credentials first, and waits until each static pod is
// Ready beside its self-hosted sibling.
type restoreStatic struct{ node string }

func (a *restoreStatic) Name() string {
	return fmt.Sprintf("Starting static %s on %s from the self-hosted specs", strings.Join(Components, ", "), a.node)
}

func (a *restoreStatic) Done(ctx context.Context, c *Context) (bool, error) {
	for _, comp := range Components {
		m, err := MirrorPod(ctx, c.Client, comp, a.node)
		if err != nil || m == nil || !kube.PodReady(m) {
			return false, err
		}
	}
	return true, nil
}

func (a *restoreStatic) Execute(ctx context.Context, c *Context) error {
	ip, err := nodeAddress(ctx, c, a.node)
	if err != nil {
		return err
	}
	job := agentJob{Node: a.node, Purpose: "restore-static", Payload: map[string]string{}}
	var install []string
	for _, comp := range Components {
		tmpl, err := selfHostedTemplate(ctx, c, comp)
		if err != nil {
			return err
		}
		if comp == "kube-apiserver" {
			if err := restoreCredentials(ctx, c, a.node, tmpl); err != nil {
				return err
			}
		}
		static, err := StaticFromTemplate(comp, tmpl, ip, mountPathOf(tmpl))
		if err != nil {
			return err
		}
		manifest, err := encodeYAML(static)
		if err != nil {
			return err
		}
		file := comp + ".yaml"
		job.Payload[file] = manifest
		install = append(install, payloadCheckScript(file, manifest)+"\n"+fmt.Sprintf(`cp /payload/%[1]s %[2]s/%[1]s.next
chmod 600 %[2]s/%[1]s.next
mv %[2]s/%[1]s.next %[3]s/%[1]s
echo "wrote %[3]s/%[1]s"`, file, stagingDir, ManifestDir))
	}
	job.Script = "mkdir -p " + stagingDir + "\n" + strings.Join(install, "\n")
	if _, err := runAgent(ctx, c, job); err != nil {
		return err
	}
	for _, comp := range Components {
		c.Waiting("the kubelet on %s to run static %s, Ready", a.node, comp)
		err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
			m, err := MirrorPod(ctx, c.Client, comp, a.node)
			return err == nil && m != nil && kube.PodReady(m), nil
		})
		if err != nil {
			return fmt.Errorf("static %s on %s did not become Ready: %w", comp, a.node, err)
		}
	}
	return waitAPIHealthy(ctx, c)
}

// selfHostedTemplate reads the running workload's pod template.
func selfHostedTemplate(ctx context.Context, c *Context, component string) (*corev1.PodTemplateSpec, error) {
	if component == "kube-apiserver" {
		ds, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, component, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("cannot read the %s DaemonSet: %w", component, err)
		}
		return &ds.Spec.Template, nil
	}
	d, err := c.Client.AppsV1().Deployments(kube.Namespace).Get(ctx, component, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot read the %s Deployment: %w", component, err)
	}
	return &d.Spec.Template, nil
}

// restoreCredentials has the credentials agent write Secret kube-apiserver's
// items back into kubeadm's pki directory on node, where the static API
// server's unchanged flags expect them. A template that mounts no Secret
// (bootstrap --certs hostpath) reads the node's files already.
func restoreCredentials(ctx context.Context, c *Context, node string, t *corev1.PodTemplateSpec) error {
	var items []corev1.KeyToPath
	mounts := secretMounts(t)
	for _, v := range t.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		if at := mounts[v.Name]; v.Secret.SecretName != APIServerSecret || at != kubeadmPKI {
			return fmt.Errorf("the API server mounts Secret %s at %s; revert restores only Secret %s at kubeadm's %s", v.Secret.SecretName, at, APIServerSecret, kubeadmPKI)
		}
		items = v.Secret.Items
	}
	if len(items) == 0 {
		return nil
	}
	args := []string{nodecreds.Command, "--restore", "--pki-dir", kubeadmPKI, "--namespace", kube.Namespace, "--secret", APIServerSecret}
	for _, it := range items {
		args = append(args, "--item", it.Key+"="+it.Path)
	}
	if err := grantCredentialsAgent(ctx, c); err != nil {
		return err
	}
	defer revokeCredentialsAgent(context.WithoutCancel(ctx), c)
	c.Waiting("the node agent on %s to write Secret %s back to %s", node, APIServerSecret, kubeadmPKI)
	_, err := runAgent(ctx, c, agentJob{Node: node, Purpose: "restore-apiserver-credentials", Args: args, WritePKI: true})
	return err
}

// nodeAddress is the node's InternalIP, which kubeadm advertises.
func nodeAddress(ctx context.Context, c *Context, node string) (string, error) {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("cannot read node %s: %w", node, err)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address, nil
		}
	}
	return "", fmt.Errorf("node %s reports no InternalIP to advertise", node)
}

// leaveDaemonSet labels the node, so the API server DaemonSet deletes its
// pod there, and waits until that pod is gone and the API stays healthy.
type leaveDaemonSet struct{ node string }

func (a *leaveDaemonSet) Name() string {
	return "Taking " + a.node + " out of the kube-apiserver DaemonSet"
}

func (a *leaveDaemonSet) Done(ctx context.Context, c *Context) (bool, error) {
	if exists, err := workloadExists(ctx, c.Client, "kube-apiserver"); !exists || err != nil {
		return !exists, err
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	if _, ok := n.Labels[StaticLabel]; !ok {
		return false, nil
	}
	left, err := selfHostedPodsOn(ctx, c, "kube-apiserver", a.node)
	return err == nil && len(left) == 0, err
}

func (a *leaveDaemonSet) Execute(ctx context.Context, c *Context) error {
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, StaticLabel)
	if _, err := c.Client.CoreV1().Nodes().Patch(ctx, a.node, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: ssa.FieldManager}); err != nil {
		return fmt.Errorf("cannot label node %s: %w", a.node, err)
	}
	c.Waiting("the DaemonSet's kube-apiserver pod on %s to go", a.node)
	if err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		left, err := selfHostedPodsOn(ctx, c, "kube-apiserver", a.node)
		return err == nil && len(left) == 0, nil
	}); err != nil {
		return fmt.Errorf("the self-hosted kube-apiserver on %s did not go: %w", a.node, err)
	}
	return waitAPIHealthy(ctx, c)
}

// selfHostedPodsOn names component's self-hosted pods on node, or on every
// node when node is "".
func selfHostedPodsOn(ctx context.Context, c *Context, component, node string) ([]string, error) {
	opts := metav1.ListOptions{LabelSelector: kube.AppSelector(component)}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	pods, err := c.Client.CoreV1().Pods(kube.Namespace).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	var names []string
	for i := range pods.Items {
		if !checkpoint.IsStaticMirror(&pods.Items[i]) {
			names = append(names, pods.Items[i].Name)
		}
	}
	return names, nil
}

// removeWorkloads deletes the self-hosted workloads and their budgets, once
// static pods run everywhere.
type removeWorkloads struct{}

func (*removeWorkloads) Name() string {
	return "Deleting the kube-apiserver DaemonSet and the kube-controller-manager and kube-scheduler Deployments"
}

func (*removeWorkloads) Done(ctx context.Context, c *Context) (bool, error) {
	for _, comp := range Components {
		if exists, err := workloadExists(ctx, c.Client, comp); exists || err != nil {
			return false, err
		}
		if left, err := selfHostedPodsOn(ctx, c, comp, ""); len(left) > 0 || err != nil {
			return false, err
		}
	}
	return true, nil
}

func (*removeWorkloads) Execute(ctx context.Context, c *Context) error {
	apps := c.Client.AppsV1()
	for _, comp := range Components {
		var err error
		if comp == "kube-apiserver" {
			err = apps.DaemonSets(kube.Namespace).Delete(ctx, comp, metav1.DeleteOptions{})
		} else {
			err = apps.Deployments(kube.Namespace).Delete(ctx, comp, metav1.DeleteOptions{})
			if pdbErr := c.Client.PolicyV1().PodDisruptionBudgets(kube.Namespace).Delete(ctx, comp, metav1.DeleteOptions{}); pdbErr != nil && !apierrors.IsNotFound(pdbErr) {
				return fmt.Errorf("cannot delete PodDisruptionBudget %s: %w", comp, pdbErr)
			}
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cannot delete the self-hosted %s: %w", comp, err)
		}
	}
	for _, comp := range Components {
		c.Waiting("the self-hosted %s pods to go", comp)
		if err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
			left, err := selfHostedPodsOn(ctx, c, comp, "")
			return err == nil && len(left) == 0, nil
		}); err != nil {
			return fmt.Errorf("the self-hosted %s pods did not go: %w", comp, err)
		}
	}
	return waitAPIHealthy(ctx, c)
}

// removeCheckpointer deletes pod-checkpointer's DaemonSet and waits until
// it has removed its checkpoints and itself; then a node agent on each
// control-plane node removes whatever checkpoint file is left, and the
// checkpointer's account, grants and status go.
type removeCheckpointer struct{}

func (*removeCheckpointer) Name() string { return "Removing pod-checkpointer and every checkpoint" }

func (*removeCheckpointer) Done(ctx context.Context, c *Context) (bool, error) {
	objs, err := templateObjects(c, "pod-checkpointer.yaml")
	if err != nil {
		return false, err
	}
	for _, o := range objs {
		if exists, err := ssa.Exists(ctx, c.Dynamic, o); exists || err != nil {
			return false, err
		}
	}
	return true, nil
}

func (*removeCheckpointer) Execute(ctx context.Context, c *Context) error {
	err := c.Client.AppsV1().DaemonSets(kube.Namespace).Delete(ctx, "pod-checkpointer", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot delete the pod-checkpointer DaemonSet: %w", err)
	}
	// Left alone it would remove its checkpoints after a grace period that
	// an API blip must not trigger. With its DaemonSet pods gone, only its
	// static copy is left, which acts on nothing: the sweep removes it too.
	c.Waiting("the pod-checkpointer DaemonSet's pods to go")
	if err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pod-checkpointer"})
		if err != nil {
			return false, nil
		}
		for i := range pods.Items {
			if kube.OwnedBy(&pods.Items[i], "DaemonSet", "pod-checkpointer") {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("the pod-checkpointer DaemonSet's pods did not go: %w", err)
	}
	for _, n := range c.Cluster.ControlPlane {
		out, err := runAgent(ctx, c, agentJob{Node: n, Purpose: "remove-checkpoints", Script: removeCheckpointsScript()})
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(out); s != "" {
			c.Waiting("%s: %s", n, strings.Join(strings.Fields(s), " "))
		}
	}
	objs, err := templateObjects(c, "pod-checkpointer.yaml")
	if err != nil {
		return err
	}
	for i := len(objs) - 1; i >= 0; i-- {
		if err := ssa.Delete(ctx, c.Dynamic, objs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Where pod-checkpointer keeps its files (see package checkpointer and
// its DaemonSet's --lock-file).
const (
	inactiveManifestDir = "/etc/kubernetes/inactive-manifests"
	checkpointSecretDir = "/etc/kubernetes/checkpoint-secrets"
	checkpointerLock    = "/etc/kubernetes/pod-checkpointer.lock"
)

// removeCheckpointsScript removes every checkpoint, active (a .json static
// manifest that names its parent, the checkpointer's own copy among them)
// or inactive, their volume copies, the checkpointer's lock and the
// pivot's empty staging directory.
func removeCheckpointsScript() string {
	return fmt.Sprintf(`for f in %[1]s/*.json; do
  [ -f "$f" ] || continue
  if grep -q %[2]q "$f"; then rm -f "$f"; echo "removed active checkpoint $f"; fi
done
for d in %[3]s %[4]s %[5]s; do
  if [ -e "$d" ]; then rm -rf "$d"; echo "removed $d"; fi
done
rmdir %[6]s 2>/dev/null || true`, ManifestDir, checkpoint.CheckpointOfAnnotation, inactiveManifestDir, checkpointSecretDir, checkpointerLock, stagingDir)
}

// forgetSelfHosting removes what only the self-hosted control plane used:
// the StaticLabel on each node, the recovery record, and Secret
// kube-apiserver, whose items are back on every node's disk.
type forgetSelfHosting struct{}

func (*forgetSelfHosting) Name() string {
	return "Removing Secret " + kube.Namespace + "/" + APIServerSecret + ", the recovery record and the nodes' " + StaticLabel + " label"
}

func (*forgetSelfHosting) Done(ctx context.Context, c *Context) (bool, error) {
	labelled, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: StaticLabel})
	if err != nil || len(labelled.Items) > 0 {
		return false, err
	}
	if _, err := c.Client.CoreV1().ConfigMaps(kube.Namespace).Get(ctx, record.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return false, nil
	}
	_, err = c.Client.CoreV1().Secrets(kube.Namespace).Get(ctx, APIServerSecret, metav1.GetOptions{})
	return apierrors.IsNotFound(err), nil
}

func (*forgetSelfHosting) Execute(ctx context.Context, c *Context) error {
	labelled, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: StaticLabel})
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, StaticLabel)
	for _, n := range labelled.Items {
		if _, err := c.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: ssa.FieldManager}); err != nil {
			return fmt.Errorf("cannot unlabel node %s: %w", n.Name, err)
		}
	}
	if err := c.Client.CoreV1().ConfigMaps(kube.Namespace).Delete(ctx, record.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot delete the recovery record: %w", err)
	}
	err = c.Client.CoreV1().Secrets(kube.Namespace).Delete(ctx, APIServerSecret, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot delete Secret %s/%s: %w", kube.Namespace, APIServerSecret, err)
	}
	return nil
}

// RevertPreflight wants every control-plane node Ready and each component
// either self-hosted with a template that converts back, or static already
// (a revert cut short), so that a refused revert changes nothing.
func RevertPreflight(ctx context.Context, c *Context) (string, error) {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: kube.ControlPlaneLabel})
	if err != nil {
		return "", fmt.Errorf("cannot list control-plane nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		return "", fmt.Errorf("no node carries the %s label", kube.ControlPlaneLabel)
	}
	var notReady []string
	for i := range nodes.Items {
		if !kube.NodeReady(&nodes.Items[i]) {
			notReady = append(notReady, nodes.Items[i].Name)
		}
	}
	if len(notReady) > 0 {
		sort.Strings(notReady)
		return "", fmt.Errorf("control-plane nodes %s are not Ready: a revert must reach every one", strings.Join(notReady, ", "))
	}
	hosted := 0
	for _, comp := range Components {
		t, err := selfHostedTemplate(ctx, c, comp)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		hosted++
		if _, err := StaticFromTemplate(comp, t, "127.0.0.1", mountPathOf(t)); err != nil {
			return "", err
		}
	}
	if hosted == 0 {
		return fmt.Sprintf("%d control-plane nodes Ready; no self-hosted component is left", len(nodes.Items)), nil
	}
	return fmt.Sprintf("%d control-plane nodes Ready; %d self-hosted components convert back to static pods", len(nodes.Items), hosted), nil
}
