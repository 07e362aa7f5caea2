package pivot

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Components are the static control-plane pods the pivot replaces; etcd stays static.
var Components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// Cluster is what the pivot learns from a kubeadm-shaped cluster: its
// configuration, completed once with the user's choices (NewContext), and
// its control-plane nodes.
type Cluster struct {
	cluster.Config
	ControlPlane []string // node names, sorted
	// Mirror holds the mirror pods of the static control plane: component -> node -> pod.
	Mirror map[string]map[string]*corev1.Pod
}

// Discover reads the cluster's shape through the API.
func Discover(ctx context.Context, client kubernetes.Interface) (*Cluster, error) {
	c := &Cluster{}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: kube.ControlPlaneLabel})
	if err != nil {
		return nil, fmt.Errorf("cannot list control-plane nodes: %w", err)
	}
	for _, n := range nodes.Items {
		c.ControlPlane = append(c.ControlPlane, n.Name)
	}
	sort.Strings(c.ControlPlane)
	if c.Mirror, err = mirrorPods(ctx, client); err != nil {
		return nil, err
	}
	if c.Config, err = cluster.FromKubeadm(ctx, client); err != nil {
		return nil, err
	}
	workers, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "!" + kube.ControlPlaneLabel})
	if err != nil {
		return nil, fmt.Errorf("cannot list the nodes outside the control plane: %w", err)
	}
	for _, n := range workers.Items {
		c.DNSOffControlPlane = c.DNSOffControlPlane || !n.Spec.Unschedulable
	}
	return c, nil
}

// mirrorPods lists the static control-plane pods by component and node.
func mirrorPods(ctx context.Context, client kubernetes.Interface) (map[string]map[string]*corev1.Pod, error) {
	pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "tier=control-plane"})
	if err != nil {
		return nil, fmt.Errorf("cannot list pods in %s: %w", kube.Namespace, err)
	}
	out := map[string]map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !checkpoint.IsStaticMirror(p) {
			continue
		}
		comp := p.Labels["component"]
		if out[comp] == nil {
			out[comp] = map[string]*corev1.Pod{}
		}
		out[comp][p.Spec.NodeName] = p
	}
	return out, nil
}

// MirrorPod returns the mirror pod of component on node, if any.
func MirrorPod(ctx context.Context, client kubernetes.Interface, component, node string) (*corev1.Pod, error) {
	m, err := mirrorPods(ctx, client)
	if err != nil {
		return nil, err
	}
	return m[component][node], nil
}
