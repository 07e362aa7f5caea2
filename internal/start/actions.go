package start

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pivot"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
)

const pollInterval = time.Second

// finished reports whether an earlier run completed: the self-hosted API
// server serves on this node and the bootstrap pods are gone. The first
// steps are then done, although their files were removed at the end.
func finished(ctx context.Context, c *Context) bool {
	if bootstrapPodsOnDisk(c) {
		return false
	}
	// Before the first run no API answers; do not wait a request timeout.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return selfHostedHere(ctx, c) == ""
}

func bootstrapPodsOnDisk(c *Context) bool {
	for name := range c.Assets.BootstrapPods {
		if _, err := os.Stat(filepath.Join(c.Options.PodManifestDir, name)); err == nil {
			return true
		}
	}
	return false
}

// copySecrets gives the bootstrap pods their credentials, owner-only.
type copySecrets struct{}

func (*copySecrets) Name() string {
	return "Copying the bootstrap credentials to " + DefaultSecretsDir
}

func (*copySecrets) Done(ctx context.Context, c *Context) (bool, error) {
	return holdsFiles(c.Options.SecretsDir, c.Assets.Secrets, 0o600) || finished(ctx, c), nil
}

func (*copySecrets) Execute(_ context.Context, c *Context) error {
	if err := os.MkdirAll(c.Options.SecretsDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(c.Options.SecretsDir, 0o700); err != nil {
		return err
	}
	return writeFiles(c.Options.SecretsDir, c.Assets.Secrets)
}

// writeBootstrapPods hands the temporary control plane to the kubelet.
type writeBootstrapPods struct{}

func (*writeBootstrapPods) Name() string { return "Writing the bootstrap static pods" }

func (*writeBootstrapPods) Done(ctx context.Context, c *Context) (bool, error) {
	return holdsFiles(c.Options.PodManifestDir, c.Assets.BootstrapPods, 0o600) || finished(ctx, c), nil
}

func (*writeBootstrapPods) Execute(_ context.Context, c *Context) error {
	return writeFiles(c.Options.PodManifestDir, c.Assets.BootstrapPods)
}

// awaitTemporaryAPI waits until an API server answers through the endpoint.
type awaitTemporaryAPI struct{}

func (*awaitTemporaryAPI) Name() string { return "Waiting for the API server" }

func (*awaitTemporaryAPI) Done(ctx context.Context, c *Context) (bool, error) {
	_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil, nil
}

func (*awaitTemporaryAPI) Execute(ctx context.Context, c *Context) error {
	c.Waiting("%s to answer /readyz (the kubelet pulls and starts the bootstrap pods)", c.Assets.Admin.Host)
	return kube.WaitReadyz(ctx, c.Client, 1, pollInterval)
}

// createControlPlane applies manifests/ in dependency order.
type createControlPlane struct{}

func (*createControlPlane) Name() string {
	return "Creating the self-hosted control plane and add-ons (server-side apply)"
}

func (*createControlPlane) Done(ctx context.Context, c *Context) (bool, error) {
	for _, w := range c.Assets.Waves {
		if held, err := ssa.Holds(ctx, c.Dynamic, w...); !held || err != nil {
			return false, nil
		}
	}
	return true, nil
}

func (*createControlPlane) Execute(ctx context.Context, c *Context) error {
	for _, w := range c.Assets.Waves {
		// A new namespace or CRD may take a moment to serve: retry a wave.
		var last error
		err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
			last = ssa.Apply(ctx, c.Dynamic, w...)
			if last != nil {
				c.Waiting("%d objects to apply: %v", len(w), last)
			}
			return last == nil, nil
		})
		if err != nil {
			return errors.Join(err, last)
		}
	}
	return nil
}

// labelControlPlane marks the control-plane nodes as they register: a
// kubelet may not set node-role labels on itself.
type labelControlPlane struct{}

func (*labelControlPlane) Name() string { return "Labelling the control-plane nodes" }

func (*labelControlPlane) nodes(c *Context) []string {
	if len(c.Assets.ControlPlane) == 0 {
		return []string{c.Options.NodeName}
	}
	return c.Assets.ControlPlane
}

func (a *labelControlPlane) Done(ctx context.Context, c *Context) (bool, error) {
	for _, n := range a.nodes(c) {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if _, ok := node.Labels[kube.ControlPlaneLabel]; !ok {
			return false, nil
		}
	}
	return true, nil
}

func (a *labelControlPlane) Execute(ctx context.Context, c *Context) error {
	patch := []byte(`{"metadata":{"labels":{"` + kube.ControlPlaneLabel + `":""}}}`)
	pending := map[string]bool{}
	for _, n := range a.nodes(c) {
		pending[n] = true
	}
	return wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		for n := range pending {
			if _, err := c.Client.CoreV1().Nodes().Patch(ctx, n, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: ssa.FieldManager}); err == nil {
				delete(pending, n)
			}
		}
		if len(pending) > 0 {
			c.Waiting("%d control-plane nodes to register (kubelet TLS bootstrapping)", len(pending))
		}
		return len(pending) == 0, nil
	})
}

// awaitSelfHosted waits for the self-hosted control plane on this node.
type awaitSelfHosted struct{}

func (*awaitSelfHosted) Name() string {
	return "Waiting for the self-hosted control plane and a checkpoint of its API server"
}

func (*awaitSelfHosted) Done(ctx context.Context, c *Context) (bool, error) {
	return selfHostedHere(ctx, c) == "", nil
}

func (*awaitSelfHosted) Execute(ctx context.Context, c *Context) error {
	return wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		why := selfHostedHere(ctx, c)
		if why != "" {
			c.Waiting("%s", why)
		}
		return why == "", nil
	})
}

// selfHostedHere says what the self-hosted control plane still lacks on
// this node, "" when nothing: a Ready API server pod with an inactive
// checkpoint, and a Ready controller manager and scheduler somewhere.
func selfHostedHere(ctx context.Context, c *Context) string {
	if why := pivot.SelfHostedAPIServerOn(ctx, c.Client, c.Options.NodeName); why != "" {
		return why
	}
	for _, d := range []string{"kube-controller-manager", "kube-scheduler"} {
		dep, err := c.Client.AppsV1().Deployments(kube.Namespace).Get(ctx, d, metav1.GetOptions{})
		if err != nil || !deploymentServes(dep) {
			return "a Ready " + d
		}
	}
	return ""
}

func deploymentServes(d *appsv1.Deployment) bool { return d.Status.ReadyReplicas > 0 }

// removeBootstrap takes the temporary control plane away, waits until the
// self-hosted one answers alone, and removes the bootstrap credentials.
type removeBootstrap struct{}

func (*removeBootstrap) Name() string { return "Removing the bootstrap control plane" }

func (*removeBootstrap) Done(ctx context.Context, c *Context) (bool, error) {
	_, err := os.Stat(c.Options.SecretsDir)
	return os.IsNotExist(err) && finished(ctx, c), nil
}

func (*removeBootstrap) Execute(ctx context.Context, c *Context) error {
	for name := range c.Assets.BootstrapPods {
		if err := os.Remove(filepath.Join(c.Options.PodManifestDir, name)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	mirror := "bootstrap-kube-apiserver-" + c.Options.NodeName
	c.Waiting("the kubelet to stop %s", mirror)
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Pods(kube.Namespace).Get(ctx, mirror, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("the bootstrap API server did not stop: %w", err)
	}
	c.Waiting("the self-hosted API server to answer /readyz five times in a row")
	if err := kube.WaitReadyz(ctx, c.Client, 5, pollInterval/2); err != nil {
		return fmt.Errorf("the API does not answer without the bootstrap API server: %w", err)
	}
	return os.RemoveAll(c.Options.SecretsDir)
}

// recordForRecovery writes the recovery record that `kubectl selfhost
// recover` reads from etcd when no API server is left.
type recordForRecovery struct{}

func (*recordForRecovery) Name() string {
	return "Recording the API server and checkpointer DaemonSets for recover"
}

// Done asks the API, which may not answer yet: that is not done.
func (*recordForRecovery) Done(ctx context.Context, c *Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	held, err := record.Held(ctx, c.Client)
	return err == nil && held, nil
}

func (*recordForRecovery) Execute(ctx context.Context, c *Context) error {
	return record.Write(ctx, c.Client, c.Dynamic)
}
