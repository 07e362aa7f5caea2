// Package e2e boots an HA kind cluster from locally built images and runs the
// end-to-end features against it, in the order suite_test.go lists them.
// `make e2e` builds the images first.
//
// Environment:
//
//	E2E_NODE_IMAGE  kind node image (default kindest/node:v1.37.2)
//	E2E_UPGRADE_FROM  the version TestStart boots and upgrades from (default v1.36.3; node image kindest/node:<it>)
//	E2E_KIND        kind binary (default ../bin/kind)
//	E2E_KEEP=1      keep the cluster afterwards (delete it with `kind delete cluster --name selfhost-e2e`)
//
// A run finds a kept cluster and reuses it, so E2E_KEEP=1 with
// E2E_FLAGS='-run TestRecovery' drills a cluster an earlier run pivoted.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/types"
	"sigs.k8s.io/e2e-framework/support/kind"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
)

const (
	clusterName  = "selfhost-e2e"
	kindConfig   = "kind-ha.yaml"
	artifactsDir = "_artifacts"

	// Test workload images, built by hack/images/build.sh.
	agnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	busyboxImage = "docker.io/library/busybox:1.36"
)

var testenv env.Environment

// suiteState is what the steps of one `go test` run share. It travels in the
// context (stateOf), not in package variables. Each test can run alone with
// -run, so none may count on another having filled a field in.
type suiteState struct {
	cluster *kind.Cluster // created or reused by createCluster
	// nodes is the label value io.x-k8s.kind.cluster of the cluster under
	// test: the kind cluster's name, then the bare cluster's in TestStart.
	nodes string
	// runs, when set, is how many times a drill repeats (else drillRuns);
	// prefix starts the names of the artifacts.
	runs   int
	prefix string
	// failed is set by a failed setup step or test, so Finish knows to export logs.
	failed atomic.Bool
	// canaryDigest is the digest of the canaries written before the pivot,
	// or of those found on a kept cluster; empty until one of those.
	canaryDigest string
}

type suiteStateKey struct{}

// stateOf returns the suiteState TestMain put in the context.
func stateOf(ctx context.Context) *suiteState {
	return ctx.Value(suiteStateKey{}).(*suiteState)
}

func TestMain(m *testing.M) {
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		log.Fatalf("e2e flags: %v", err)
	}
	testenv, err = env.NewWithContext(context.WithValue(context.Background(), suiteStateKey{}, &suiteState{}), cfg)
	if err != nil {
		log.Fatalf("e2e environment: %v", err)
	}
	testenv.Setup(recordFailure(createCluster), recordFailure(loadImages))
	testenv.AfterEachTest(func(ctx context.Context, _ *envconf.Config, t *testing.T) (context.Context, error) {
		if t.Failed() {
			stateOf(ctx).failed.Store(true)
		}
		return ctx, nil
	})
	testenv.Finish(exportLogsOnFailure, destroyCluster)
	os.Exit(testenv.Run(m))
}

func recordFailure(f types.EnvFunc) types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		ctx, err := f(ctx, cfg)
		if err != nil {
			stateOf(ctx).failed.Store(true)
		}
		return ctx, err
	}
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// nodeImage is the kind cluster's node image: E2E_NODE_IMAGE, or the one
// the image factory builds. TestStart's is upgradeFrom()'s.
func nodeImage() string { return getenv("E2E_NODE_IMAGE", "kindest/node:"+images.KubernetesVersion) }

// keepClusters reports whether E2E_KEEP=1 asks to keep the clusters.
func keepClusters() bool { return os.Getenv("E2E_KEEP") == "1" }

// kindPath is the kind binary: E2E_KIND, or the one make builds.
func kindPath() string {
	bin, _ := filepath.Abs(getenv("E2E_KIND", "../bin/kind"))
	return bin
}

func createCluster(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
	kindBin := kindPath()
	if _, err := os.Stat(kindBin); err != nil {
		// Without it, e2e-framework would try `go install` of an older kind.
		return ctx, fmt.Errorf("kind binary %s is missing; run `make e2e` or set E2E_KIND: %w", kindBin, err)
	}
	image := nodeImage()
	if !kindTestsSelected() {
		log.Printf("no test that needs the kind cluster is selected; not creating it")
		return ctx, nil
	}
	cluster := kind.NewCluster(clusterName)
	stateOf(ctx).cluster, stateOf(ctx).nodes = cluster, clusterName
	cluster.WithPath(kindBin)
	cluster.WithOpts(kind.WithImage(image))

	start := time.Now()
	// --retain keeps the nodes of a failed creation so their logs can be exported.
	kubeconfig, err := cluster.Create(ctx, "--config", kindConfig, "--retain")
	if err != nil {
		return ctx, err
	}
	log.Printf("cluster %s (%s) created in %s", clusterName, image, time.Since(start).Round(time.Second))
	cfg.WithKubeconfigFile(kubeconfig)
	return ctx, nil
}

// loadImages loads the images some node lacks, in one `kind load` so layers
// they share are sent once. The locally built node image preloads all but the
// checkpointer, whose label hash covers them, so usually only that one is sent.
func loadImages(ctx context.Context, _ *envconf.Config) (context.Context, error) {
	if stateOf(ctx).cluster == nil {
		return ctx, nil
	}
	var load []string
	for _, img := range extraImages() {
		present, err := onEveryNode(ctx, img)
		if err != nil {
			return ctx, err
		}
		if !present {
			load = append(load, img)
		}
	}
	if len(load) == 0 {
		return ctx, nil
	}
	start := time.Now()
	// LoadImage pastes its argument into the command line, so several names fit.
	if err := stateOf(ctx).cluster.LoadImage(ctx, strings.Join(load, " ")); err != nil {
		return ctx, err
	}
	log.Printf("loaded %s in %s", strings.Join(load, ", "), time.Since(start).Round(time.Second))
	return ctx, nil
}

// extraImages are what the nodes need beyond the node image's own.
func extraImages() []string {
	set := images.Upstream(images.KubernetesVersion, "")
	return []string{set.Flannel, set.FlannelCNI, set.MetricsServer, set.Checkpointer, agnhostImage, busyboxImage}
}

// onEveryNode reports whether every node's containerd has an image of that name.
// (kind load itself would ask crictl, which the local node image lacks.)
func onEveryNode(ctx context.Context, image string) (bool, error) {
	out, err := exec.CommandContext(ctx, "docker", "ps", "--filter", "label=io.x-k8s.kind.cluster="+stateOf(ctx).nodes,
		"--format", `{{.Names}} {{.Label "io.x-k8s.kind.role"}}`).Output()
	if err != nil {
		return false, fmt.Errorf("listing the nodes of %s: %w", clusterName, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, role, _ := strings.Cut(line, " ")
		if role == "external-load-balancer" {
			continue
		}
		got, err := exec.CommandContext(ctx, "docker", "exec", name,
			"ctr", "-n", "k8s.io", "images", "ls", "-q", "name=="+image).Output()
		if err != nil {
			return false, fmt.Errorf("listing images on node %s: %w", name, err)
		}
		if strings.TrimSpace(string(got)) != image {
			return false, nil
		}
	}
	return true, nil
}

func exportLogsOnFailure(ctx context.Context, _ *envconf.Config) (context.Context, error) {
	s := stateOf(ctx)
	if s.cluster == nil || !s.failed.Load() {
		return ctx, nil
	}
	dest, err := filepath.Abs(filepath.Join(artifactsDir, "kind-logs-"+time.Now().UTC().Format("20060102T150405Z")))
	if err != nil {
		return ctx, err
	}
	log.Printf("a step failed: exporting cluster logs to %s", dest)
	if err := s.cluster.ExportLogs(ctx, dest); err != nil {
		log.Printf("exporting logs: %v", err)
	}
	return ctx, nil
}

func destroyCluster(ctx context.Context, _ *envconf.Config) (context.Context, error) {
	cluster := stateOf(ctx).cluster
	if cluster == nil {
		return ctx, nil
	}
	if keepClusters() {
		log.Printf("E2E_KEEP=1: keeping cluster %s (kubeconfig %s)", clusterName, cluster.GetKubeconfig())
		return ctx, nil
	}
	return ctx, cluster.Destroy(ctx)
}

// kindTestsSelected reports whether -run selects a test of the kind
// cluster: `-run TestStart` alone needs none.
func kindTestsSelected() bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	re, err := regexp.Compile(f.Value.String())
	if err != nil {
		return true
	}
	for _, name := range []string{"TestPivot", "TestRecovery", "TestSmoke"} {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}
