package e2e

import (
	"context"
	"log"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/types"

	"github.com/kubectl-selfhost/kubectl-selfhost/e2e/barenode"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/start"
)

// startCluster is TestStart's cluster: 3 control-plane nodes and a worker,
// without kubeadm. It starts at upgradeFrom(), a minor below the default,
// so that the upgrade has somewhere to go.
const startCluster = "selfhost-start"

func newStartCluster() *barenode.Cluster {
	return barenode.New(startCluster, "kindest/node:"+upgradeFrom(), 3, 1)
}

// startClusterKey holds, in the context, the bare cluster TestStart runs on.
type startClusterKey struct{}

func bareCluster(ctx context.Context) *barenode.Cluster {
	return ctx.Value(startClusterKey{}).(*barenode.Cluster)
}

// step runs an environment func as a feature step.
func step(f types.EnvFunc) func(context.Context, *testing.T, *envconf.Config) context.Context {
	return func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		t.Helper()
		ctx, err := f(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return ctx
	}
}

// makeRoomForStart deletes the kind cluster, which the earlier tests are
// done with (its logs first, if one failed): two clusters do not fit on 2
// cores. The drills and artifacts from here on are the bare cluster's.
func makeRoomForStart(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	s := stateOf(ctx)
	if s.cluster != nil {
		if _, err := exportLogsOnFailure(ctx, cfg); err != nil {
			t.Log(err)
		}
		if _, err := destroyCluster(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		s.cluster = nil
	}
	s.nodes, s.runs, s.prefix = startCluster, 1, "start-"
	return context.WithValue(ctx, startClusterKey{}, newStartCluster())
}

// onBare runs an environment func of the bare cluster as a feature step.
func onBare(f func(c *barenode.Cluster) types.EnvFunc) func(context.Context, *testing.T, *envconf.Config) context.Context {
	return func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		return step(f(bareCluster(ctx)))(ctx, t, cfg)
	}
}

// startTheCluster runs start on the first control-plane node, SIGKILLs it
// after it applied the manifests, runs it again to completion, and waits
// for verify to pass: the time to a working cluster.
func startTheCluster(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	c := bareCluster(ctx)
	began := time.Now()
	killed, err := c.KillStart(ctx, pluginPath(), "✓ Creating the self-hosted control plane")
	if err != nil {
		t.Fatalf("%v\n%s", err, killed)
	}
	t.Logf("killed start with SIGKILL after it applied the manifests; its steps:\n%s", stepLines(killed))
	ctx = step(c.Start(pluginPath()))(ctx, t, cfg)
	took := time.Since(began)
	mustVerify(ctx, t, cfg, 5*time.Minute)
	t.Logf("kubectl selfhost start took %s with the kill and resume, and verify passed %s after it began; the resumed start's steps:\n%s",
		took.Round(time.Second), time.Since(began).Round(time.Second), stepLines(c.StartOutput))
	return ctx
}

// startRerunIsNoOp runs start again: every step is already done.
func startRerunIsNoOp(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	c := bareCluster(ctx)
	out, err := exec.CommandContext(ctx, "docker", "exec", c.ControlPlanes[0], "kubectl-selfhost", "start", "--asset-dir", "/root/assets").CombinedOutput()
	if err != nil {
		t.Fatalf("start again: %v\n%s", err, out)
	}
	if done, all := strings.Count(string(out), "(already done)"), len(start.Actions()); done != all {
		t.Errorf("a rerun did something: %d of %d steps already done\n%s", done, all, out)
	}
	return ctx
}

// noKubeadmAnywhere wants no kubeadm file or object, no bootstrap pod and no
// bootstrap credential left, and every node Ready.
func noKubeadmAnywhere(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	c := bareCluster(ctx)
	client := clientset(t, cfg)
	if _, err := client.CoreV1().ConfigMaps(kube.Namespace).Get(ctx, "kubeadm-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap kubeadm-config: %v, want NotFound", err)
	}
	for _, n := range append(append([]string{}, c.ControlPlanes...), c.Workers...) {
		left := nodeShell(ctx, t, n, "ls -d /etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf /etc/kubernetes/bootstrap-secrets "+
			"/etc/kubernetes/manifests/bootstrap-* /etc/kubernetes/manifests/kube-apiserver.yaml "+
			"/etc/kubernetes/manifests/kube-controller-manager.yaml /etc/kubernetes/manifests/kube-scheduler.yaml 2>/dev/null; true")
		if strings.TrimSpace(left) != "" {
			t.Errorf("%s still has %s", n, strings.Join(strings.Fields(left), ", "))
		}
	}
	allNodesReady(ctx, t, cfg)
	return ctx
}

// smokeOnBare proves workloads as TestSmoke does on the kind cluster.
func smokeOnBare(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	ctx = createSmokeNamespace(ctx, t, cfg)
	defer deleteSmokeNamespace(ctx, t, cfg)
	for _, assess := range []func(context.Context, *testing.T, *envconf.Config) context.Context{
		podReachesPodOnAnotherNode, coreDNSResolves, serviceRoutesAcrossNodes,
	} {
		ctx = assess(ctx, t, cfg)
	}
	return ctx
}

// tearDownStart exports the bare nodes' logs when a step failed, then
// deletes them unless E2E_KEEP=1.
func tearDownStart(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	c := bareCluster(ctx)
	if t.Failed() {
		dest, _ := filepath.Abs(filepath.Join(artifactsDir, "start-logs-"+time.Now().UTC().Format("20060102T150405Z")))
		log.Printf("a step failed: exporting the bare nodes' logs to %s", dest)
		if err := c.ExportLogs(ctx, dest); err != nil {
			t.Log(err)
		}
	}
	if keepClusters() {
		t.Logf("E2E_KEEP=1: keeping the bare cluster %s (kubeconfig %s)", startCluster, c.Kubeconfig)
		return ctx
	}
	return step(c.Destroy())(ctx, t, cfg)
}
