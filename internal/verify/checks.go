package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"

	clusterconfig "github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
)

// Workloads the checks look for.
const (
	CheckpointerDaemonSet = "pod-checkpointer"
	FlannelNamespace      = "kube-flannel"
	FlannelDaemonSet      = "kube-flannel-ds"
)

// apiServerCheck names the check a self-hosted control plane hinges on.
const apiServerCheck = "kube-apiserver"

// checks are the checks that only read the API.
func (c *cluster) checks() []check.Checker {
	checks := []check.Checker{
		check.Named("nodes", c.checkNodes),
		check.Named(apiServerCheck, c.checkAPIServer),
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		checks = append(checks,
			check.Named(name, func(ctx context.Context) (string, error) { return c.checkDeployment(ctx, name) }),
			check.Named(name+" PDB", func(ctx context.Context) (string, error) { return c.checkPDB(ctx, name) }))
	}
	return append(checks,
		check.Named("pod-checkpointer", c.checkCheckpointers),
		check.Named("apiserver checkpoints", c.checkCheckpoints),
		check.Named("recovery record", c.checkRecord),
		check.Named("flannel", c.checkFlannel),
		check.Named("certificates", c.checkCertificates))
}

// missingError is the failure of a check whose object does not exist.
type missingError struct{ kind, namespace, name string }

func (e *missingError) Error() string {
	return fmt.Sprintf("no %s %s/%s", e.kind, e.namespace, e.name)
}

// isMissing says whether a check failed because its object does not exist.
func isMissing(err error) bool {
	var missing *missingError
	return errors.As(err, &missing)
}

// readError is why a check could not read the object it checks.
func readError(kind, namespace, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return &missingError{kind: kind, namespace: namespace, name: name}
	}
	return fmt.Errorf("cannot read %s: %w", kind, err)
}

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

func (c *cluster) checkNodes(context.Context) (string, error) {
	var notReady []string
	for i := range c.nodes {
		if !kube.NodeReady(&c.nodes[i]) {
			notReady = append(notReady, c.nodes[i].Name)
		}
	}
	if len(c.nodes) == 0 {
		return "", errors.New("no nodes registered")
	}
	if len(notReady) > 0 {
		return "", fmt.Errorf("not Ready: %s", strings.Join(notReady, ", "))
	}
	return fmt.Sprintf("%d of %d Ready (%d control-plane)", len(c.nodes), len(c.nodes), len(c.controlPlane)), nil
}

// checkAPIServer wants the DaemonSet ready with one pod per control-plane
// node, and no static kube-apiserver manifest left behind.
func (c *cluster) checkAPIServer(ctx context.Context) (string, error) {
	const name = "kube-apiserver"
	ds, err := c.client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", readError("DaemonSet", kube.Namespace, name, err)
	}
	st := ds.Status
	if st.DesiredNumberScheduled == 0 || st.NumberReady != st.DesiredNumberScheduled {
		return "", fmt.Errorf("DaemonSet %d of %d ready", st.NumberReady, st.DesiredNumberScheduled)
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
		return "", fmt.Errorf("want one ready pod per control-plane node: %s", strings.Join(missing, ", "))
	}
	if err := c.noStaticManifest(name); err != nil {
		return "", err
	}
	return fmt.Sprintf("DaemonSet %d/%d ready, one per control-plane node, no static manifest", st.NumberReady, st.DesiredNumberScheduled), nil
}

func (c *cluster) checkDeployment(ctx context.Context, name string) (string, error) {
	d, err := c.client.AppsV1().Deployments(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", readError("Deployment", kube.Namespace, name, err)
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if want == 0 || d.Status.ReadyReplicas != want {
		return "", fmt.Errorf("Deployment %d of %d ready", d.Status.ReadyReplicas, want)
	}
	if err := c.noStaticManifest(name); err != nil {
		return "", err
	}
	return fmt.Sprintf("Deployment %d/%d ready, no static manifest", d.Status.ReadyReplicas, want), nil
}

// noStaticManifest fails when component still runs from a static manifest.
func (c *cluster) noStaticManifest(component string) error {
	var left []string
	for i := range c.pods {
		if p := &c.pods[i]; p.Labels["component"] == component && checkpoint.IsStaticMirror(p) {
			left = append(left, p.Spec.NodeName)
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		return fmt.Errorf("static manifest still present on %s", strings.Join(left, ", "))
	}
	return nil
}

func (c *cluster) checkPDB(ctx context.Context, name string) (string, error) {
	pdb, err := c.client.PolicyV1().PodDisruptionBudgets(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", readError("PodDisruptionBudget", kube.Namespace, name, err)
	}
	return fmt.Sprintf("PodDisruptionBudget present (%d healthy, %d disruptions allowed)", pdb.Status.CurrentHealthy, pdb.Status.DisruptionsAllowed), nil
}

// checkCheckpointers wants a ready checkpointer on every control-plane node.
func (c *cluster) checkCheckpointers(context.Context) (string, error) {
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
	if len(c.controlPlane) == 0 || len(notReady) > 0 {
		return "", fmt.Errorf("not Ready on %s", strings.Join(notReady, ", "))
	}
	return fmt.Sprintf("Ready on all %d control-plane nodes", len(c.controlPlane)), nil
}

// checkCheckpoints wants each control-plane node's checkpointer to hold an
// inactive checkpoint of its node's API server pod, and to have reported
// since its kubelet last started.
func (c *cluster) checkCheckpoints(ctx context.Context) (string, error) {
	apiPods := map[string]string{} // node -> API server pod
	for i := range c.pods {
		if p := &c.pods[i]; kube.OwnedBy(p, "DaemonSet", "kube-apiserver") {
			apiPods[p.Spec.NodeName] = p.Name
		}
	}
	var problems []string
	for _, n := range c.controlPlane {
		st, err := checkpoint.ReadNodeStatus(ctx, c.client.CoreV1().ConfigMaps(kube.Namespace), n)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if age, written := c.reportAge(st); age > ReportFreshness {
			problems = append(problems, fmt.Sprintf("%s: no report for %s by the API server's clock (last written %s)",
				n, age.Round(time.Second), written.UTC().Format(time.TimeOnly)))
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
		return "", errors.New(strings.Join(slices.Compact(problems), "; "))
	}
	return fmt.Sprintf("an inactive checkpoint of the API server on each of %d nodes", len(c.controlPlane)), nil
}

// ReportFreshness is how old a checkpointer's report may be. Each one
// reports at least once a minute while the API server accepts its token.
const ReportFreshness = 3 * time.Minute

// reportAge is how long ago the API server stored the node's report, by
// the server's own clock; a report without that record falls back to the
// time the node wrote into it.
func (c *cluster) reportAge(st checkpoint.NodeStatus) (time.Duration, time.Time) {
	written := st.Written
	if written.IsZero() {
		written = st.Updated
	}
	return c.now.Sub(written), written
}

// checkRecord wants the recovery record to hold the DaemonSets as they are:
// recover would bring back what it holds.
func (c *cluster) checkRecord(ctx context.Context) (string, error) {
	held, err := record.Held(ctx, c.client)
	if err != nil {
		return "", err
	}
	if !held {
		return "", fmt.Errorf("ConfigMap %s/%s does not hold the kube-apiserver and pod-checkpointer DaemonSets as they are; run kubectl selfhost bootstrap to record them", kube.Namespace, record.Name)
	}
	return fmt.Sprintf("ConfigMap %s/%s holds both DaemonSets for recover", kube.Namespace, record.Name), nil
}

func (c *cluster) checkFlannel(ctx context.Context) (string, error) {
	ds, err := c.client.AppsV1().DaemonSets(FlannelNamespace).Get(ctx, FlannelDaemonSet, metav1.GetOptions{})
	if err != nil {
		return "", readError("DaemonSet", FlannelNamespace, FlannelDaemonSet, err)
	}
	st := ds.Status
	if int(st.NumberReady) != len(c.nodes) || st.NumberReady != st.DesiredNumberScheduled {
		return "", fmt.Errorf("%d of %d nodes have a ready flannel pod", st.NumberReady, len(c.nodes))
	}
	return fmt.Sprintf("ready on all %d nodes", st.NumberReady), nil
}

func (v *Verifier) checkDNS(ctx context.Context) (string, error) {
	if v.DNS == nil {
		return "", errors.New("no DNS probe configured")
	}
	domain := v.ClusterDomain
	if domain == "" {
		var err error
		if domain, err = clusterconfig.Domain(ctx, v.Client); err != nil {
			return "", fmt.Errorf("%w; name the domain with --cluster-domain", err)
		}
	}
	name := "kubernetes.default.svc." + domain
	addr, err := v.DNS.Resolve(ctx, name)
	if err != nil {
		return "", fmt.Errorf("%s did not resolve from a probe pod: %w", name, err)
	}
	return fmt.Sprintf("%s resolves to %s from a probe pod", name, addr), nil
}
