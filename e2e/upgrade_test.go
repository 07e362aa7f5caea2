package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/e2e-framework/klient/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/upgrade"
)

const (
	// dayTwoFlag is the day-2 change; bogusFlag one the API server refuses.
	dayTwoFlag = "--audit-log-maxage=7"
	bogusFlag  = "--e2e-bogus-flag=1"
	// upgradeTarget bounds the whole upgrade, the kill and resume included.
	upgradeTarget = 8 * time.Minute
)

// upgradeFrom is the version TestStart boots and upgrades from:
// E2E_UPGRADE_FROM, one minor below the default; its node image is the
// image factory's kindest/node:<it>.
func upgradeFrom() string { return getenv("E2E_UPGRADE_FROM", "v1.36.3") }

// upgradeUnderProbe runs the plugin with args while the prober reads the
// API 10 times a second and fails the test on an outage.
func upgradeUnderProbe(ctx context.Context, t *testing.T, cfg *envconf.Config, what string, run func() (string, error)) (string, error, time.Duration) {
	t.Helper()
	p, err := startProber(cfg.KubeconfigFile())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, runErr := run()
	wall := time.Since(start)
	total, failed, longest, errs := p.result()
	t.Logf("%s: wall time %s; prober: %d requests at %d/s, %d failed, longest gap %s; %s",
		what, wall.Round(time.Second), total, probeRate, failed, longest.Round(time.Millisecond), p.where())
	for _, e := range errs {
		t.Logf("failed request: %s", e)
	}
	// As for the pivot: the goal is zero; the test holds the line a user
	// would notice, no outage.
	if failed*1000 > total || longest > maxAPIGap {
		t.Errorf("%d of %d API requests failed during %s, longest gap %s; want under 0.1%% and %s", failed, total, what, longest.Round(time.Millisecond), maxAPIGap)
	}
	return out, runErr, wall
}

// upgradeControlPlane moves the control plane to the default version. It
// SIGKILLs the first run as its first old API server pod is about to go,
// and a rerun resumes.
func upgradeControlPlane(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	to := images.KubernetesVersion
	dry, err := selfhost(ctx, cfg, "upgrade", "--kubernetes-version", to, "--dry-run")
	if err != nil || !strings.Contains(dry, "kube-apiserver:"+to) {
		t.Fatalf("upgrade --dry-run: %v\n%s", err, dry)
	}
	t.Logf("the dry run:\n%s", dry)
	out, err, wall := upgradeUnderProbe(ctx, t, cfg, "upgrade "+upgradeFrom()+" -> "+to, func() (string, error) {
		killSelfhostAfter(ctx, t, cfg, "is Ready and checkpointed", "upgrade", "--kubernetes-version", to, "--yes")
		return selfhost(ctx, cfg, "upgrade", "--kubernetes-version", to, "--yes")
	})
	if err != nil {
		t.Fatalf("the resumed upgrade failed: %v\n%s", err, out)
	}
	t.Logf("the resumed upgrade's steps:\n%s", stepLines(out))
	if wall > upgradeTarget {
		t.Errorf("the upgrade took %s, over its %s target", wall.Round(time.Second), upgradeTarget)
	}
	client := clientset(t, cfg)
	if v, err := client.Discovery().ServerVersion(); err != nil || v.GitVersion != to {
		t.Errorf("the API server reports %v (%v), want %s", v, err, to)
	}
	for _, comp := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector(comp)})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("listing %s pods: %v", comp, err)
		}
		for _, p := range pods.Items {
			if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+to) {
				t.Errorf("%s on %s runs %s", p.Name, p.Spec.NodeName, img)
			}
		}
	}
	everyCheckpointHolds(ctx, t, "kube-apiserver:"+to, "kube-apiserver:"+upgradeFrom())
	return ctx
}

// everyCheckpointHolds waits until each control-plane node holds an API
// server checkpoint with want and, unless gone is empty, none with gone: an
// old pod's checkpoint goes a grace period after the pod.
func everyCheckpointHolds(ctx context.Context, t *testing.T, want, gone string) {
	t.Helper()
	nodes := controlPlaneContainers(ctx, t)
	var last string
	holds := func(context.Context) (bool, error) {
		for _, n := range nodes {
			script := "cd /etc/kubernetes/inactive-manifests && for f in kube-system-kube-apiserver-*.json; do grep -q -F -e '" + want + "' \"$f\" && echo has; "
			if gone != "" {
				script += "grep -q -F -e '" + gone + "' \"$f\" && echo stale; "
			}
			out := nodeShell(ctx, t, n, script+"done; true")
			if !strings.Contains(out, "has") || strings.Contains(out, "stale") {
				last = fmt.Sprintf("%s: %s", n, strings.Join(strings.Fields(out), " "))
				return false, nil
			}
		}
		return true, nil
	}
	start := time.Now()
	if err := wait.For(holds, polling(ctx, 2*time.Second, 2*time.Minute)...); err != nil {
		t.Fatalf("not every API server checkpoint holds %s and none %s: %s", want, gone, last)
	}
	none := ""
	if gone != "" {
		none = ", and none with " + gone
	}
	t.Logf("every node holds an API server checkpoint with %s%s (%s after the check began)", want, none, time.Since(start).Round(time.Second))
}

// upgradeRerunIsNoOp: a rerun after success changes nothing.
func upgradeRerunIsNoOp(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	out, err := selfhost(ctx, cfg, "upgrade", "--kubernetes-version", images.KubernetesVersion, "--yes")
	if err != nil {
		t.Fatalf("upgrade again: %v\n%s", err, out)
	}
	if done, all := strings.Count(out, "(already done)"), len(upgrade.Actions()); done != all {
		t.Errorf("a rerun did something: %d of %d steps already done\n%s", done, all, out)
	}
	return ctx
}

// setFlagEverywhere changes one API server flag through upgrade --set: it
// lands on every API server pod and in every node's checkpoint.
func setFlagEverywhere(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	set := "kube-apiserver." + strings.TrimPrefix(dayTwoFlag, "--")
	out, err, _ := upgradeUnderProbe(ctx, t, cfg, "upgrade --set "+set, func() (string, error) {
		return selfhost(ctx, cfg, "upgrade", "--set", set, "--yes")
	})
	if err != nil {
		t.Fatalf("upgrade --set: %v\n%s", err, out)
	}
	t.Logf("its steps:\n%s", stepLines(out))
	pods, err := clientset(t, cfg).CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver")})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !strings.Contains(strings.Join(p.Spec.Containers[0].Command, " "), dayTwoFlag) {
			t.Errorf("%s on %s lacks %s", p.Name, p.Spec.NodeName, dayTwoFlag)
		}
	}
	everyCheckpointHolds(ctx, t, dayTwoFlag, "")
	return ctx
}

// rollBackBadFlag asks for a flag the API server refuses: the first node's
// new pod crash-loops beside the old one, upgrade rolls it back and fails
// naming the node, and no checkpoint ever holds the flag.
func rollBackBadFlag(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	set := "kube-apiserver." + strings.TrimPrefix(bogusFlag, "--")
	out, err, wall := upgradeUnderProbe(ctx, t, cfg, "upgrade --set "+set, func() (string, error) {
		return selfhost(ctx, cfg, "upgrade", "--set", set, "--timeout", "60s", "--yes")
	})
	if err == nil {
		t.Fatalf("upgrade with %s succeeded:\n%s", bogusFlag, out)
	}
	failure := regexp.MustCompile(`kube-apiserver on (\S+): pod (\S+) was not Ready within 1m0s: .*rolled back to revision \d+ in (\S+?),`).FindStringSubmatch(out)
	if failure == nil {
		t.Fatalf("the failure does not name the node, the pod and the rollback:\n%s", out)
	}
	t.Logf("upgrade failed after %s as it should: %s", wall.Round(time.Second), lastLine(out))
	t.Logf("the rollback took %s (node %s, pod %s)", failure[3], failure[1], failure[2])
	if _, reason, _ := strings.Cut(failure[0], "within 1m0s:"); !strings.Contains(reason, "e2e-bogus-flag") {
		t.Errorf("the reason does not quote the API server's refusal: %s", failure[0])
	}
	assertNoCheckpointHas(ctx, t, strings.TrimPrefix(bogusFlag, "--"))
	ds, err := clientset(t, cfg).AppsV1().DaemonSets(kube.Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cmd := strings.Join(ds.Spec.Template.Spec.Containers[0].Command, " "); strings.Contains(cmd, bogusFlag) || !strings.Contains(cmd, dayTwoFlag) {
		t.Errorf("the DaemonSet was not rolled back to the day-2 spec: %s", cmd)
	}
	mustVerify(ctx, t, cfg, 3*time.Minute)
	return ctx
}
