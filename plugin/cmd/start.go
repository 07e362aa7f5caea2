package cmd

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/start"
)

// StartOptions are the inputs of `kubectl selfhost start`.
type StartOptions struct {
	genericiooptions.IOStreams
	Start  start.Options
	DryRun bool

	assets *start.Assets
}

// NewStartCommand returns `kubectl selfhost start`.
func NewStartCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &StartOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "start --asset-dir DIR",
		Short: "Boot a new self-hosted cluster from render's assets, on its first control-plane host",
		Long: `Start runs as root on the first control-plane host, beside a running kubelet
installed with render's kubelet/ files, as bootkube start did:
  1. checks the assets, the kubelet's static pod directory and etcd;
  2. copies the bootstrap credentials to ` + start.DefaultSecretsDir + ` (0600)
     and writes the bootstrap static pods;
  3. waits for the temporary API server and applies manifests/ (server-side
     apply, namespaces and RBAC first), labels the control-plane nodes;
  4. waits until the self-hosted API server is Ready and checkpointed on this
     node, then removes the bootstrap pods and credentials and waits until
     the API answers through the self-hosted servers.
The other nodes join by themselves with the bootstrap token. A rerun after
success changes nothing; a rerun after an interruption resumes.`,
		Example: `  sudo kubectl selfhost start --asset-dir /root/assets`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Start.AssetDir, "asset-dir", "", "render's asset directory (required)")
	f.StringVar(&o.Start.PodManifestDir, "pod-manifest-path", render.NodeStaticPodDir, "the kubelet's static pod directory")
	f.StringVar(&o.Start.NodeName, "node-name", "", "this host's node name (default: the hostname)")
	f.DurationVar(&o.Start.StepTimeout, "timeout", 10*time.Minute, "how long each step may take")
	f.BoolVar(&o.DryRun, "dry-run", false, "run the checks and print the plan, change nothing")
	return cmd
}

// Complete fills in the node name and reads the assets.
func (o *StartOptions) Complete() error {
	o.Start.SecretsDir = start.DefaultSecretsDir
	if o.Start.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("cannot read the hostname; give --node-name: %w", err)
		}
		o.Start.NodeName = h
	}
	if o.Start.AssetDir == "" {
		return fmt.Errorf("--asset-dir is required")
	}
	a, err := start.LoadAssets(o.Start.AssetDir)
	o.assets = a
	return err
}

// Validate rejects bad flags.
func (o *StartOptions) Validate() error {
	if o.Start.StepTimeout <= 0 {
		return fmt.Errorf("--timeout must be positive")
	}
	return nil
}

// Run checks, then starts the cluster (or prints the plan).
func (o *StartOptions) Run(ctx context.Context) error {
	began := time.Now()
	status := progress.NewStatus(o.Out, isTerminal(o.Out))
	check := status.Start("Running preflight checks")
	if err := start.Preflight(ctx, o.Start, o.assets, check, o.Start.StepTimeout); err != nil {
		check.End(err)
		return fmt.Errorf("preflight: %w; nothing was changed", err)
	}
	check.End(nil)
	sc, err := start.NewContext(o.Start, o.assets, status)
	if err != nil {
		return err
	}
	if o.DryRun {
		fmt.Fprintf(o.Out, "Plan for %s, nothing will be changed:\n", o.Start.NodeName)
		return start.Plan(ctx, sc)
	}
	if err := start.Run(ctx, sc); err != nil {
		return fmt.Errorf("%w; run start again to resume", err)
	}
	fmt.Fprintf(o.Out, "The self-hosted control plane runs (%s). Check it with: kubectl selfhost verify --kubeconfig %s/%s\n",
		time.Since(began).Round(time.Second), o.Start.AssetDir, render.AdminKubeconfig)
	return nil
}
