package e2e

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/klient/wait"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// dnsWatcher is a pod on a node outside the control plane that asks cluster
// DNS for the API server's Service twice a second and logs each answer. Its
// kubelet keeps running while every control-plane node restarts, and its log
// tells afterwards, to the nanosecond, when DNS answered.
const dnsWatcher = "e2e-dns-watcher"

// dnsBackTarget is how soon after the API DNS must answer from that node.
const dnsBackTarget = 5 * time.Second

func startDNSWatcher(ctx context.Context, t *testing.T, client kubernetes.Interface) {
	t.Helper()
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "!" + kube.ControlPlaneLabel})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no node outside the control plane for the DNS watcher (%v)", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: dnsWatcher, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeName:                      nodes.Items[0].Name,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "ask", Image: busyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", "while true; do nslookup kubernetes.default.svc.cluster.local >/dev/null 2>&1 && echo answered; sleep 0.5; done"},
			}},
		},
	}
	if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := func(context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, dnsWatcher, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	}
	if err := wait.For(running, polling(ctx, time.Second, time.Minute)...); err != nil {
		t.Fatalf("the DNS watcher did not start on %s", pod.Spec.NodeName)
	}
}

func stopDNSWatcher(ctx context.Context, client kubernetes.Interface) {
	_ = client.CoreV1().Pods(metav1.NamespaceDefault).Delete(context.WithoutCancel(ctx), dnsWatcher, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
}

// dnsAnswers lists when the watcher got an answer, since the given time.
func dnsAnswers(ctx context.Context, t *testing.T, client kubernetes.Interface, since time.Time) []time.Time {
	t.Helper()
	raw, err := client.CoreV1().Pods(metav1.NamespaceDefault).GetLogs(dnsWatcher, &corev1.PodLogOptions{
		Timestamps: true, SinceTime: &metav1.Time{Time: since},
	}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("cannot read the DNS watcher's log: %v", err)
	}
	var out []time.Time
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		stamp, line, _ := strings.Cut(sc.Text(), " ")
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && line == "answered" && !at.Before(since) {
			out = append(out, at)
		}
	}
	return out
}

// dnsBackAfter is how long after apiBack the first answer came (0 when DNS
// answered at that moment), and the longest silence since start.
func dnsBackAfter(answers []time.Time, start, apiBack time.Time) (back, silence time.Duration, ok bool) {
	last := start
	for _, at := range answers {
		silence = max(silence, at.Sub(last))
		last = at
		if !ok && !at.Before(apiBack.Add(-time.Second)) {
			back, ok = max(0, at.Sub(apiBack)), true
		}
	}
	return back, silence, ok
}
