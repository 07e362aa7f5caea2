package verify

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Workloads the checks look for.
const (
	CheckpointerDaemonSet = "pod-checkpointer"
	FlannelNamespace      = "kube-flannel"
	FlannelDaemonSet      = "kube-flannel-ds"
)

// staticComponents names the control-plane components that still have a
// static pod (a mirror pod that is not a checkpoint) somewhere.
func staticComponents(c *cluster) []string {
	seen := map[string]bool{}
	for i := range c.pods {
		p := &c.pods[i]
		comp := p.Labels["component"]
		if checkpoint.IsStaticMirror(p) && comp != "" && comp != "etcd" {
			seen[comp] = true
		}
	}
	var out []string
	for comp := range seen {
		out = append(out, comp)
	}
	sort.Strings(out)
	return out
}

// staticNodes lists the nodes where component still runs from a static manifest.
func staticNodes(c *cluster, component string) []string {
	var out []string
	for i := range c.pods {
		if p := &c.pods[i]; p.Labels["component"] == component && checkpoint.IsStaticMirror(p) {
			out = append(out, p.Spec.NodeName)
		}
	}
	sort.Strings(out)
	return out
}

func checkNodes(c *cluster) Result {
	var notReady []string
	for i := range c.nodes {
		if !kube.NodeReady(&c.nodes[i]) {
			notReady = append(notReady, c.nodes[i].Name)
		}
	}
	if len(c.nodes) == 0 {
		return fail("nodes", "no nodes registered")
	}
	if len(notReady) > 0 {
		return fail("nodes", "not Ready: %s", strings.Join(notReady, ", "))
	}
	return pass("nodes", "%d of %d Ready (%d control-plane)", len(c.nodes), len(c.nodes), len(c.controlPlane))
}

// checkAPIServer wants the DaemonSet ready with one pod per control-plane
// node, and no static kube-apiserver manifest left behind.
func (v *Verifier) checkAPIServer(ctx context.Context, c *cluster) Result {
	const name = "kube-apiserver"
	ds, err := v.Client.AppsV1().DaemonSets(Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail(name, "no DaemonSet %s/%s", Namespace, name)
	}
	if err != nil {
		return fail(name, "cannot read DaemonSet: %v", err)
	}
	st := ds.Status
	if st.DesiredNumberScheduled == 0 || st.NumberReady != st.DesiredNumberScheduled {
		return fail(name, "DaemonSet %d of %d ready", st.NumberReady, st.DesiredNumberScheduled)
	}
	perNode := map[string]int{}
	for i := range c.pods {
		p := &c.pods[i]
		if kube.OwnedBy(p, "DaemonSet", name) && kube.PodReady(p) {
			perNode[p.Spec.NodeName]++
		}
	}
	var missing []string
	for _, n := range c.controlPlane {
		if perNode[n] != 1 {
			missing = append(missing, fmt.Sprintf("%s has %d", n, perNode[n]))
		}
	}
	if len(missing) > 0 {
		return fail(name, "want one ready pod per control-plane node: %s", strings.Join(missing, ", "))
	}
	if left := staticNodes(c, name); len(left) > 0 {
		return fail(name, "static manifest still present on %s", strings.Join(left, ", "))
	}
	return pass(name, "DaemonSet %d/%d ready, one per control-plane node, no static manifest", st.NumberReady, st.DesiredNumberScheduled)
}

func (v *Verifier) checkDeployment(ctx context.Context, c *cluster, name string) Result {
	d, err := v.Client.AppsV1().Deployments(Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail(name, "no Deployment %s/%s", Namespace, name)
	}
	if err != nil {
		return fail(name, "cannot read Deployment: %v", err)
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if want == 0 || d.Status.ReadyReplicas != want {
		return fail(name, "Deployment %d of %d ready", d.Status.ReadyReplicas, want)
	}
	if left := staticNodes(c, name); len(left) > 0 {
		return fail(name, "static manifest still present on %s", strings.Join(left, ", "))
	}
	return pass(name, "Deployment %d/%d ready, no static manifest", d.Status.ReadyReplicas, want)
}

func (v *Verifier) checkPDB(ctx context.Context, name string) Result {
	check := name + " PDB"
	pdb, err := v.Client.PolicyV1().PodDisruptionBudgets(Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail(check, "no PodDisruptionBudget %s/%s", Namespace, name)
	}
	if err != nil {
		return fail(check, "cannot read PodDisruptionBudget: %v", err)
	}
	return pass(check, "PodDisruptionBudget present (%d healthy, %d disruptions allowed)", pdb.Status.CurrentHealthy, pdb.Status.DisruptionsAllowed)
}

// checkCheckpointer wants a ready checkpointer on every control-plane node,
// each holding an inactive checkpoint of its node's API server pod, and each
// having reported since its kubelet last started.
func (v *Verifier) checkCheckpointer(ctx context.Context, c *cluster) []Result {
	const name = "pod-checkpointer"
	readyOn := map[string]bool{}
	for i := range c.pods {
		if p := &c.pods[i]; kube.OwnedBy(p, "DaemonSet", CheckpointerDaemonSet) && kube.PodReady(p) {
			readyOn[p.Spec.NodeName] = true
		}
	}
	var notReady []string
	for _, n := range c.controlPlane {
		if !readyOn[n] {
			notReady = append(notReady, n)
		}
	}
	results := []Result{pass(name, "Ready on all %d control-plane nodes", len(c.controlPlane))}
	if len(c.controlPlane) == 0 || len(notReady) > 0 {
		results[0] = fail(name, "not Ready on %s", strings.Join(notReady, ", "))
	}
	apiPods := map[string]string{} // node -> API server pod
	for i := range c.pods {
		if p := &c.pods[i]; kube.OwnedBy(p, "DaemonSet", "kube-apiserver") {
			apiPods[p.Spec.NodeName] = p.Name
		}
	}
	var problems []string
	for _, n := range c.controlPlane {
		st, err := checkpoint.ReadNodeStatus(ctx, v.Client.CoreV1().ConfigMaps(Namespace), n)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if started := c.kubeletStarted[n]; st.Updated.Before(started) {
			problems = append(problems, fmt.Sprintf("%s: no report since its kubelet started at %s (last report %s)",
				n, started.UTC().Format(time.TimeOnly), st.Updated.UTC().Format(time.TimeOnly)))
			continue
		}
		if !st.HasInactive(apiPods[n]) {
			problems = append(problems, fmt.Sprintf("%s: no inactive checkpoint of %q", n, apiPods[n]))
		}
	}
	if len(problems) > 0 {
		return append(results, fail("apiserver checkpoints", "%s", strings.Join(slices.Compact(problems), "; ")))
	}
	return append(results, pass("apiserver checkpoints", "an inactive checkpoint of the API server on each of %d nodes", len(c.controlPlane)))
}

func (v *Verifier) checkFlannel(ctx context.Context, c *cluster) Result {
	const check = "flannel"
	ds, err := v.Client.AppsV1().DaemonSets(FlannelNamespace).Get(ctx, FlannelDaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail(check, "no DaemonSet %s/%s", FlannelNamespace, FlannelDaemonSet)
	}
	if err != nil {
		return fail(check, "cannot read DaemonSet: %v", err)
	}
	st := ds.Status
	if int(st.NumberReady) != len(c.nodes) || st.NumberReady != st.DesiredNumberScheduled {
		return fail(check, "%d of %d nodes have a ready flannel pod", st.NumberReady, len(c.nodes))
	}
	return pass(check, "ready on all %d nodes", st.NumberReady)
}

func (v *Verifier) checkDNS(ctx context.Context) Result {
	const check = "dns"
	if v.DNS == nil {
		return fail(check, "no DNS probe configured")
	}
	name := "kubernetes.default.svc." + v.ClusterDomain
	addr, err := v.DNS.Resolve(ctx, name)
	if err != nil {
		return fail(check, "%s did not resolve from a probe pod: %v", name, err)
	}
	return pass(check, "%s resolves to %s from a probe pod", name, addr)
}
