// Package start boots a brand-new cluster from render's assets on its first
// control-plane host, as bootkube start did: a temporary static control
// plane creates the self-hosted one through the API, then steps aside.
package start

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/atomicfile"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/steps"
)

// Options are the user's choices.
type Options struct {
	AssetDir string
	// PodManifestDir is the kubelet's --pod-manifest-path (staticPodPath).
	PodManifestDir string
	// SecretsDir is where the bootstrap pods read their credentials.
	SecretsDir string
	// NodeName is this host's node: the bootstrap pods' mirror pods, and
	// where the first self-hosted API server must be checkpointed.
	NodeName    string
	StepTimeout time.Duration
}

// DefaultSecretsDir is bootkube's.
const DefaultSecretsDir = "/etc/kubernetes/bootstrap-secrets"

// Context carries what every action needs: the assets, read once, and the
// clients of the cluster they describe.
type Context struct {
	Options Options
	Assets  *Assets
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Status  *progress.Status

	step *progress.Step
}

// NewContext builds the clients: the assets' API endpoint and CA, and a
// client certificate of group system:masters that start issues itself from
// the cluster CA and keeps in memory. The admin kubeconfig's group is only
// bound to cluster-admin by a manifest that start applies.
func NewContext(o Options, a *Assets, status *progress.Status) (*Context, error) {
	cfg, err := a.superAdmin()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Context{Options: o, Assets: a, Client: client, Dynamic: dyn, Status: status}, nil
}

// Waiting reports what the running action waits on.
func (c *Context) Waiting(format string, args ...any) { c.step.Waiting(format, args...) }

// Action is one step of start.
type Action = steps.Action[*Context]

// Actions is the whole start, in order.
func Actions() []Action {
	return []Action{
		&copySecrets{},
		&writeBootstrapPods{},
		&awaitTemporaryAPI{},
		&createControlPlane{},
		&labelControlPlane{},
		&awaitSelfHosted{},
		&recordForRecovery{},
		&removeBootstrap{},
	}
}

// Run starts the cluster, skipping what is already done.
func Run(ctx context.Context, c *Context) error {
	return steps.Run(ctx, c.Status, c.Options.StepTimeout, c, Actions(), func(s *progress.Step) { c.step = s })
}

// Plan prints what a run would do.
func Plan(ctx context.Context, c *Context) error {
	return steps.Plan(ctx, c.Status, c, Actions())
}

// writeFiles writes each file under dir, owner-only and atomically: the
// kubelet never reads half a manifest.
func writeFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		if err := atomicfile.Write(filepath.Join(dir, name), data, 0o600, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// holdsFiles reports whether dir/name holds each content, with mode.
func holdsFiles(dir string, files map[string][]byte, mode os.FileMode) bool {
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		fi, serr := os.Stat(filepath.Join(dir, name))
		if err != nil || serr != nil || string(got) != string(data) || fi.Mode().Perm() != mode {
			return false
		}
	}
	return true
}
