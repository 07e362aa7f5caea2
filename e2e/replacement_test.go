package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/klient/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// unschedulableFor is how long nothing schedules the API server's
// replacements: twice the time a checkpoint of a parent gone from the API
// used to live.
var unschedulableFor = 2 * checkpoint.DefaultGrace.Remove

// deleteAPIServersWhileNothingSchedules takes kube-scheduler away, deletes
// every API server pod, and keeps the replacements unscheduled for
// unschedulableFor (bootkube #824). The checkpoints must serve the API the
// whole time; once scheduling returns, verify must pass.
func deleteAPIServersWhileNothingSchedules(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	client := clientset(t, cfg)
	quick := quickClient(t, cfg)
	nodes := controlPlaneContainers(ctx, t)
	scaleScheduler(ctx, t, client, 0)
	restored := false
	defer func() { // whatever happens, give the cluster its scheduler back
		if !restored {
			restoreScheduler(context.Background(), t, client, nodes)
		}
	}()
	noScheduler := func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-scheduler")})
		return err == nil && len(pods.Items) == 0, nil
	}
	if err := wait.For(noScheduler, polling(ctx, time.Second, 2*time.Minute)...); err != nil {
		t.Fatal("kube-scheduler pods are still there 2m after scaling it to 0")
	}

	outage, err := startProber(cfg.KubeconfigFile())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := client.CoreV1().Pods(kube.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver")}); err != nil {
		t.Fatalf("deleting every API server pod: %v", err)
	}
	// The deleted pods serve out their termination; then every node's
	// checkpoint takes over.
	var waiting []string
	reportedSince := start
	allActive := func(ctx context.Context) (bool, error) {
		waiting = waiting[:0]
		for _, n := range nodes {
			st, err := checkpoint.ReadNodeStatus(ctx, quick.CoreV1().ConfigMaps(kube.Namespace), n)
			if err != nil || !st.Updated.After(reportedSince) || !slices.ContainsFunc(st.Checkpoints, func(cp checkpoint.CheckpointStatus) bool {
				return cp.Phase == checkpoint.PhaseActive
			}) {
				waiting = append(waiting, n)
			}
		}
		return len(waiting) == 0, nil
	}
	if err := wait.For(allActive, polling(ctx, time.Second, 2*time.Minute)...); err != nil {
		t.Fatalf("2m after every API server pod was deleted, %v serve no active checkpoint", waiting)
	}
	total, failed, longest, _ := outage.result()
	t.Logf("every API server pod deleted with no scheduler: every node serves its checkpoint %s later (%d of %d requests failed, longest gap %s)",
		time.Since(start).Round(100*time.Millisecond), failed, total, longest.Round(time.Millisecond))

	// Now nothing may go: the checkpoints are all there is.
	reportedSince = time.Now() // each checkpointer reports at least once a minute
	held, err := startProber(cfg.KubeconfigFile())
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(unschedulableFor)
	unscheduled := func(ctx context.Context) (bool, error) {
		pods, err := quick.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver")})
		if err == nil {
			for _, p := range pods.Items {
				// A checkpoint's mirror pod is on its node from the start.
				if p.Spec.NodeName != "" && p.DeletionTimestamp == nil && checkpoint.CheckpointOf(&p) == "" {
					return false, fmt.Errorf("replacement %s was scheduled to %s with no scheduler running; the test proves nothing", p.Name, p.Spec.NodeName)
				}
			}
		}
		return time.Now().After(until), nil
	}
	if err := wait.For(unscheduled, polling(ctx, 5*time.Second, unschedulableFor+time.Minute)...); err != nil {
		t.Fatal(err)
	}
	total, failed, longest, errs := held.result()
	t.Logf("for %s with the replacements unscheduled, %d of %d requests failed, longest gap %s", unschedulableFor, failed, total, longest.Round(time.Millisecond))
	for _, e := range errs {
		t.Logf("failed request: %s", e)
	}
	if failed*1000 > total || longest > maxAPIGap {
		t.Errorf("the checkpoints did not keep the API up: %d of %d requests failed, longest gap %s; want under 0.1%% and %s",
			failed, total, longest.Round(time.Millisecond), maxAPIGap)
	}
	if ok, _ := allActive(ctx); !ok {
		t.Errorf("%v serve no active checkpoint %s after the deletion", waiting, time.Since(start).Round(time.Second))
	}

	restoreScheduler(ctx, t, client, nodes)
	restored = true
	returned := time.Now()
	mustVerify(ctx, t, cfg, 5*time.Minute)
	t.Logf("verify passed %s after scheduling returned", time.Since(returned).Round(time.Second))
	checkCanaries(ctx, t, cfg)
	return ctx
}

func scaleScheduler(ctx context.Context, t *testing.T, client kubernetes.Interface, replicas int) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := client.AppsV1().Deployments(kube.Namespace).Patch(ctx, "kube-scheduler", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling kube-scheduler to %d: %v", replicas, err)
	}
}

// restoreScheduler scales kube-scheduler back to one replica per
// control-plane node and, since no scheduler runs to place them, binds its
// pods to the nodes itself, one a node, as the scheduler would.
func restoreScheduler(ctx context.Context, t *testing.T, client kubernetes.Interface, nodes []string) {
	t.Helper()
	scaleScheduler(ctx, t, client, len(nodes))
	bound := func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-scheduler")})
		if err != nil {
			return false, nil
		}
		used := map[string]bool{}
		var pending []corev1.Pod
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				used[p.Spec.NodeName] = true
			} else if p.DeletionTimestamp == nil {
				pending = append(pending, p)
			}
		}
		for _, p := range pending {
			for _, n := range nodes {
				if used[n] {
					continue
				}
				binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
					Target: corev1.ObjectReference{Kind: "Node", Name: n}}
				if err := client.CoreV1().Pods(p.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err == nil {
					used[n] = true
				}
				break
			}
		}
		return len(used) == len(nodes), nil
	}
	if err := wait.For(bound, polling(ctx, time.Second, 2*time.Minute)...); err != nil {
		t.Errorf("kube-scheduler's pods were not all bound within 2m: %v", err)
	}
}
