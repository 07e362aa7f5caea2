package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/e2e-framework/klient/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// revertToStatic runs revert beside the prober: static pods take over one
// node at a time, so no request may fail.
func revertToStatic(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	p, err := startProber(cfg.KubeconfigFile())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := selfhost(ctx, cfg, "revert", "--yes")
	wall := time.Since(start)
	total, failed, longest, errs := p.result()
	t.Logf("revert wall time %s; prober: %d requests at %d/s, %d failed, longest gap %s; %s",
		wall.Round(time.Second), total, probeRate, failed, longest.Round(time.Millisecond), p.where())
	if err != nil {
		t.Fatalf("revert failed: %v\n%s", err, out)
	}
	t.Logf("revert's steps:\n%s", stepLines(out))
	for _, e := range errs {
		t.Logf("failed request: %s", e)
	}
	if failed > 0 || longest > maxAPIGap {
		t.Errorf("%d of %d API requests failed during the revert, longest gap %s; want 0 and under %s", failed, total, longest.Round(time.Millisecond), maxAPIGap)
	}
	return ctx
}

func verifyStaticPasses(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	out, err := selfhost(ctx, cfg, "verify", "--expect", "static")
	if err != nil || !strings.Contains(out, "Static control plane, healthy") {
		t.Fatalf("verify --expect static: %v\n%s", err, out)
	}
	t.Logf("%s", lastLine(out))
	return ctx
}

// noCheckpointLeft wants no checkpoint, checkpointer file or copy of the
// API server's credentials anywhere but kubeadm's directories.
func noCheckpointLeft(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
	for _, n := range controlPlaneContainers(ctx, t) {
		left := nodeShell(ctx, t, n, `cd /etc/kubernetes
ls -d inactive-manifests checkpoint-secrets pod-checkpointer.lock manifests/*.json 2>/dev/null || true`)
		if strings.TrimSpace(left) != "" {
			t.Errorf("%s still has %s", n, strings.Join(strings.Fields(left), ", "))
		}
		manifests := strings.Fields(nodeShell(ctx, t, n, "ls /etc/kubernetes/manifests"))
		if want := []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"}; strings.Join(manifests, " ") != strings.Join(want, " ") {
			t.Errorf("%s: /etc/kubernetes/manifests holds %v, want kubeadm's %v", n, manifests, want)
		}
	}
	return ctx
}

// kubeadmUpgradePlanRuns runs kubeadm's own view of the cluster on the first
// control-plane node: the static pods are where and what kubeadm expects.
func kubeadmUpgradePlanRuns(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
	node := controlPlaneContainers(ctx, t)[0]
	out := nodeShell(ctx, t, node, "kubeadm upgrade plan 2>&1")
	if !strings.Contains(out, "[upgrade/versions] Cluster version:") {
		t.Fatalf("kubeadm upgrade plan on %s did not read the cluster:\n%s", node, out)
	}
	t.Logf("kubeadm upgrade plan on %s exited 0: %s", node, strings.TrimSpace(grepLine(out, "Cluster version")))
	return ctx
}

// revertRerunIsNoOp wants every step of a second revert already done.
func revertRerunIsNoOp(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	out, err := selfhost(ctx, cfg, "revert", "--yes")
	if err != nil {
		t.Fatalf("revert rerun failed: %v\n%s", err, out)
	}
	for _, l := range strings.Split(stepLines(out), "\n") {
		if strings.Contains(l, "✓") && !strings.Contains(l, "already done") && !strings.Contains(l, "preflight") {
			t.Errorf("a rerun of revert did something: %s", l)
		}
	}
	return ctx
}

// pivotAgain runs bootstrap on the reverted cluster: the way back is also a
// way forward again.
func pivotAgain(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	start := time.Now()
	out, err := selfhost(ctx, cfg, "bootstrap", "--metrics-kubelet-insecure-tls")
	if err != nil {
		t.Fatalf("bootstrap after revert failed: %v\n%s", err, out)
	}
	wall := time.Since(start)
	mustVerify(ctx, t, cfg, 3*time.Minute)
	t.Logf("bootstrap pivoted the reverted cluster in %s; verify passed %s after it began", wall.Round(time.Second), time.Since(start).Round(time.Second))
	return ctx
}

// apiSilence is how long no API server may answer before recover runs.
const apiSilence = 60 * time.Second

// loseEveryAPIServer deletes the API server's and the checkpointer's
// DaemonSets: every API server pod goes, and the checkpoints with the
// checkpointer. It waits until no API server has answered for apiSilence.
func loseEveryAPIServer(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	for _, n := range controlPlaneContainers(ctx, t) {
		docker(ctx, t, "cp", pluginPath(), n+":/usr/local/bin/kubectl-selfhost")
	}
	client := clientset(t, cfg)
	for _, ds := range []string{"kube-apiserver", "pod-checkpointer"} {
		if err := client.AppsV1().DaemonSets(kube.Namespace).Delete(ctx, ds, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting DaemonSet %s: %v", ds, err)
		}
	}
	start := time.Now()
	quick := quickClient(t, cfg)
	lastAnswer := start
	silent := func(context.Context) (bool, error) {
		if _, err := quick.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
			lastAnswer = time.Now()
		}
		return time.Since(lastAnswer) >= apiSilence, nil
	}
	if err := wait.For(silent, polling(ctx, time.Second, 6*time.Minute)...); err != nil {
		t.Fatalf("the API still answered %s after both DaemonSets were deleted", time.Since(start).Round(time.Second))
	}
	t.Logf("both DaemonSets deleted; the API last answered %s later, and not for %s since", lastAnswer.Sub(start).Round(time.Second), apiSilence)
	return ctx
}

// recoverFromEtcd runs recover on the first master and measures the API's
// first answer. Then it runs recover on the other masters too: kind's
// kubelets talk only to their own node's API server, so theirs stay
// NotReady until a static API server runs there as well.
func recoverFromEtcd(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	nodes := controlPlaneContainers(ctx, t)
	start := time.Now()
	outs := make([]string, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	run := func(i int) {
		wg.Go(func() {
			out, err := exec.CommandContext(ctx, "docker", "exec", nodes[i], "kubectl-selfhost", "recover").CombinedOutput()
			outs[i], errs[i] = string(out), err
		})
	}
	run(0)
	back := waitAPI(ctx, t, quickClient(t, cfg), start, 5*time.Minute)
	for i := range nodes[1:] {
		run(i + 1)
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("recover on %s failed: %v\n%s", n, errs[i], outs[i])
		}
		if strings.Contains(outs[i], "PRIVATE KEY") {
			t.Errorf("recover on %s printed key material", n)
		}
	}
	t.Logf("recover on %s, run first:\n%s", nodes[0], recoverSummary(outs[0]))
	for i, n := range nodes[1:] {
		t.Logf("recover on %s, run once the API answered: %s", n, strings.TrimSpace(grepLine(outs[i+1], "is back on")))
	}
	mustVerify(ctx, t, cfg, 5*time.Minute)
	t.Logf("recover: the API answered %s after recover began; verify passed %s after it began", back.Round(100*time.Millisecond), time.Since(start).Round(time.Second))
	for _, n := range nodes {
		if left := nodeShell(ctx, t, n, "ls -d /etc/kubernetes/selfhost-recover 2>/dev/null; grep -l selfhost.dev/recovered-from /etc/kubernetes/manifests/* 2>/dev/null || true"); strings.TrimSpace(left) != "" {
			t.Errorf("%s: recover left %s", n, strings.Join(strings.Fields(left), ", "))
		}
	}
	return ctx
}

// recoverSummary keeps recover's report lines and finished steps.
func recoverSummary(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "waiting for") && !strings.Contains(l, "...") && strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func grepLine(out, part string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, part) {
			return l
		}
	}
	return fmt.Sprintf("(no line with %q)", part)
}
