// Package verify proves, through the API alone, that a control plane is
// self-hosted and ready to recover: each check reads the cluster and says
// pass or fail, with the reason.
package verify

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// Report is the outcome of every check.
type Report struct {
	// SelfHosted is false when the control plane still runs as static pods.
	SelfHosted bool          `json:"selfHosted"`
	Summary    string        `json:"summary"`
	Passed     bool          `json:"passed"`
	Results    check.Results `json:"results"`
}

// DNSProber resolves a name from inside the cluster.
type DNSProber interface {
	Resolve(ctx context.Context, name string) (string, error)
}

// Verifier runs the checks.
type Verifier struct {
	Client kubernetes.Interface
	DNS    DNSProber
	// ClusterDomain is the cluster's DNS domain; empty asks the cluster (cluster.Domain).
	ClusterDomain string
	// Clock tells the time by the API server's clock; nil reads the Date of
	// the server's answer (ServerTime).
	Clock func(context.Context) time.Time
	// Expect is ExpectSelfHosted (the default when empty) or ExpectStatic.
	Expect string
}

// cluster is what the checks read, fetched once, and the client for the
// rest.
type cluster struct {
	client       kubernetes.Interface
	nodes        []corev1.Node
	controlPlane []string // node names
	pods         []corev1.Pod
	// kubeletStarted is when each node's kubelet last started, from its
	// "Starting" event; absent when the event has expired or cannot be read.
	kubeletStarted map[string]time.Time
	// now is the API server's time, so a node's skewed clock cannot make a
	// stale report look fresh.
	now time.Time
}

// Run runs every check. An error means the cluster could not be read at all.
func (v *Verifier) Run(ctx context.Context) (*Report, error) {
	c, err := v.read(ctx)
	if err != nil {
		return nil, err
	}
	if v.Expect == ExpectStatic {
		results := check.All(ctx, append(c.staticChecks(), check.Named("dns", v.checkDNS))...)
		r := &Report{Results: results, Passed: results.Passed()}
		r.Summary = fmt.Sprintf("%d of %d checks failed.", results.Failed(), len(results))
		if r.Passed {
			r.Summary = fmt.Sprintf("Static control plane, healthy: every check passed (%d checks).", len(results))
		}
		return r, nil
	}
	results := check.All(ctx, append(c.checks(), check.Named("dns", v.checkDNS))...)
	r := &Report{Results: results, Passed: results.Passed()}

	static := staticComponents(c)
	apiServer, _ := results.Find(apiServerCheck)
	r.SelfHosted = len(static) == 0 && apiServer.Passed
	switch {
	case len(static) > 0 && isMissing(apiServer.Err):
		r.Summary = fmt.Sprintf("This control plane is not self-hosted: %s still run as static pods. Run `kubectl selfhost bootstrap` to pivot it.", strings.Join(static, ", "))
	case r.Passed:
		r.Summary = fmt.Sprintf("The control plane is self-hosted and every check passed (%d checks).", len(results))
	default:
		r.Summary = fmt.Sprintf("%d of %d checks failed.", results.Failed(), len(results))
	}
	return r, nil
}

// Failing says which checks fail and why, or "" when none does. It leaves
// out DNS, whose probe pod is too slow to repeat while a cluster settles.
func (v *Verifier) Failing(ctx context.Context) (string, error) {
	c, err := v.read(ctx)
	if err != nil {
		return "", err
	}
	if v.Expect == ExpectStatic {
		return check.All(ctx, c.staticChecks()...).Failing(), nil
	}
	return check.All(ctx, c.checks()...).Failing(), nil
}

// Failing says which checks failed and why, or "" when none did.
func (r *Report) Failing() string { return r.Results.Failing() }

func (v *Verifier) read(ctx context.Context) (*cluster, error) {
	nodes, err := v.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot list nodes: %w", err)
	}
	pods, err := v.Client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot list pods in %s: %w", kube.Namespace, err)
	}
	clock := v.Clock
	if clock == nil {
		clock = func(ctx context.Context) time.Time { return ServerTime(ctx, v.Client) }
	}
	c := &cluster{client: v.Client, nodes: nodes.Items, pods: pods.Items, kubeletStarted: kubeletStarts(ctx, v.Client), now: clock(ctx)}
	for _, n := range nodes.Items {
		if _, ok := n.Labels[kube.ControlPlaneLabel]; ok {
			c.controlPlane = append(c.controlPlane, n.Name)
		}
	}
	sort.Strings(c.controlPlane)
	return c, nil
}

// kubeletStarts reads when each kubelet last started. Right after a node
// restart the API still holds that node's old pod and checkpointer state;
// this is how the checks tell. Events are best effort: without them the
// checks fall back to what the API holds.
func kubeletStarts(ctx context.Context, client kubernetes.Interface) map[string]time.Time {
	const selector = "involvedObject.kind=Node,reason=Starting,source=kubelet"
	events, err := client.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		return nil
	}
	out := map[string]time.Time{}
	for i := range events.Items {
		e := &events.Items[i]
		if e.InvolvedObject.Kind != "Node" || e.Reason != "Starting" || e.Source.Component != "kubelet" {
			continue // a fake or an old server may ignore the selector
		}
		at := e.LastTimestamp.Time
		if e.EventTime.After(at) {
			at = e.EventTime.Time
		}
		if at.After(out[e.InvolvedObject.Name]) {
			out[e.InvolvedObject.Name] = at
		}
	}
	return out
}

// ServerTime is the Date of the API server's answer to GET /version, or this
// machine's time when the client cannot tell (a fake, or no answer).
func ServerTime(ctx context.Context, client kubernetes.Interface) time.Time {
	rc, ok := client.Discovery().RESTClient().(*rest.RESTClient)
	if !ok || rc == nil || rc.Client == nil {
		return time.Now()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rc.Get().AbsPath("/version").URL().String(), nil)
	if err != nil {
		return time.Now()
	}
	resp, err := rc.Client.Do(req)
	if err != nil {
		return time.Now()
	}
	resp.Body.Close()
	at, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Now()
	}
	return at
}
