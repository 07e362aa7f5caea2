package pivot

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// apiServerCheckpoints says which node lacks an inactive API server checkpoint.
func apiServerCheckpoints(ctx context.Context, c *Context) string {
	pods, err := c.Client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver")})
	if err != nil {
		return "the API server pods to be listed"
	}
	byNode := map[string]string{}
	for _, p := range pods.Items {
		byNode[p.Spec.NodeName] = p.Name
	}
	for _, n := range c.Cluster.ControlPlane {
		st, err := checkpoint.ReadNodeStatus(ctx, c.Client.CoreV1().ConfigMaps(kube.Namespace), n)
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
// times in a row, pollInterval apart, before the next node is touched.
func waitAPIHealthy(ctx context.Context, c *Context) error {
	c.Waiting("the API to answer /readyz through %s five times in a row", c.Cluster.Endpoint.Host)
	return kube.WaitReadyz(ctx, c.Client, 5, pollInterval)
}

// SelfHostedAPIServerOn says what the self-hosted API server still lacks on
// node, "" when nothing: a Ready DaemonSet pod and an inactive checkpoint of
// it. start and recover wait on it before their static pods step aside.
func SelfHostedAPIServerOn(ctx context.Context, client kubernetes.Interface, node string) string {
	pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver"), FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return "the API to answer"
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName != node || !kube.OwnedBy(p, "DaemonSet", "kube-apiserver") || !kube.PodReady(p) {
			continue
		}
		st, err := checkpoint.ReadNodeStatus(ctx, client.CoreV1().ConfigMaps(kube.Namespace), node)
		if err != nil || !st.HasInactive(p.Name) {
			return "pod-checkpointer to hold an inactive checkpoint of " + p.Name + " on " + node
		}
		return ""
	}
	return "a Ready self-hosted kube-apiserver on " + node
}
