// Package kube holds the small facts about Kubernetes objects that the
// pivot and verify both read.
package kube

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Namespace is where kubeadm and kubectl-selfhost run the control plane.
const Namespace = "kube-system"

// ControlPlaneLabel marks control-plane nodes, as kubeadm sets it.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeReady reports the node's Ready condition.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// OwnedBy reports whether one of the pod's owners is kind/name,
// for example DaemonSet/kube-apiserver.
func OwnedBy(p *corev1.Pod, kind, name string) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
}

// AppLabel selects a self-hosted component's pods. kubeadm never sets it
// on its static pods, so a workload's selector cannot claim them.
const AppLabel = "k8s-app"

// AppSelector is the label selector of component's self-hosted pods.
func AppSelector(component string) string { return AppLabel + "=" + component }

// WaitReadyz waits until the API answers /readyz with "ok" times in a row,
// every interval: one answer may come from the last server still up.
func WaitReadyz(ctx context.Context, client kubernetes.Interface, times int, interval time.Duration) error {
	streak := 0
	return wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			streak = 0
			return false, nil
		}
		streak++
		return streak >= times, nil
	})
}
