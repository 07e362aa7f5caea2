package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pivot"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

// RevertOptions are the inputs of `kubectl selfhost revert`.
type RevertOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags
	Pivot       pivot.Options
	DryRun      bool
	Yes         bool

	client  kubernetes.Interface
	dynamic dynamic.Interface
}

// NewRevertCommand returns `kubectl selfhost revert`.
func NewRevertCommand(streams genericiooptions.IOStreams, configFlags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &RevertOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "revert",
		Short: "Turn the self-hosted control plane back into static pods, in place",
		Long: `Revert is bootstrap's way back. One control-plane node at a time, it writes
static kube-apiserver, kube-controller-manager and kube-scheduler manifests
from the current self-hosted specs (a flag or image changed after the pivot
is kept), with kubeadm's names and file layout, and waits until they are
Ready beside the self-hosted pods; the API server's credentials are written
back to /etc/kubernetes/pki (0600) from Secret kube-system/kube-apiserver by
a short-lived node agent. Then the node leaves the API server DaemonSet. At
the end the workloads, pod-checkpointer, every checkpoint on every node and
the Secret are removed. Afterwards:
  kubectl selfhost verify --expect static

Preflight runs before anything changes: the cluster must pass verify, and
every control-plane node must be Ready. A revert is resumable: run it again
after an interruption. It asks first on a terminal; elsewhere pass --yes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if err := o.Complete(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan, run the preflight checks, change nothing")
	f.BoolVar(&o.Yes, "yes", false, "revert without asking")
	f.DurationVar(&o.Pivot.StepTimeout, "timeout", 5*time.Minute, "how long each step may take")
	f.StringVar(&o.Pivot.CheckpointerImage, "checkpointer-image", images.DefaultCheckpointer, "pod-checkpointer image (it also runs the credentials agent)")
	f.StringVar(&o.Pivot.ToolsImage, "tools-image", images.ProbeImage, "image of the short-lived node agents (needs sh, cp, mv, rm, grep, chmod and sha256sum)")
	return cmd
}

// Validate rejects bad flags before contacting the cluster.
func (o *RevertOptions) Validate() error {
	if o.Pivot.StepTimeout <= 0 {
		return fmt.Errorf("--timeout must be positive")
	}
	return checkAgentImages(o.Pivot)
}

// Complete builds the clients from kubectl's flags.
func (o *RevertOptions) Complete() (err error) {
	o.client, o.dynamic, err = applyClientsFor(o.configFlags, 0)
	return err
}

// Run checks, asks, then reverts (or prints the plan).
func (o *RevertOptions) Run(ctx context.Context) error {
	start := time.Now()
	status := progress.NewStatus(o.Out, isTerminal(o.Out))
	cluster, err := pivot.Discover(ctx, o.client)
	if err != nil {
		return err
	}
	pc := pivot.NewContext(o.client, o.dynamic, status, o.Pivot, cluster)
	actions := pivot.RevertActions(cluster)
	check := status.Start("Running preflight checks")
	summary, err := o.preflight(ctx, pc, actions)
	if err != nil {
		check.End(err)
		return fmt.Errorf("preflight: %w; nothing was changed", err)
	}
	check.End(nil)
	fmt.Fprintf(o.Out, "  %s\n", summary)
	if o.DryRun {
		fmt.Fprintf(o.Out, "Plan for %d control-plane nodes (%s), nothing will be changed:\n", len(cluster.ControlPlane), cluster.Endpoint.Host)
		return pivot.Plan(ctx, pc, actions)
	}
	if !o.Yes {
		if err := confirm(o.In, o.ErrOut, fmt.Sprintf("This returns the control plane of %s to static pods on %s, one node at a time.",
			cluster.Endpoint.Host, strings.Join(cluster.ControlPlane, ", ")), "the revert"); err != nil {
			return err
		}
	}
	if err := runWithNodeAgents(ctx, pc, actions, o.ErrOut); err != nil {
		return fmt.Errorf("%w; run revert again to resume", err)
	}
	fmt.Fprintf(o.Out, "The control plane runs as static pods (%s). Check it with: kubectl selfhost verify --expect static\n", time.Since(start).Round(time.Second))
	return nil
}

// preflight wants a healthy self-hosted cluster, unless a revert already
// began (the first action is done), which may resume from any state.
func (o *RevertOptions) preflight(ctx context.Context, pc *pivot.Context, actions []pivot.Action) (string, error) {
	summary, err := pivot.RevertPreflight(ctx, pc)
	if err != nil {
		return "", err
	}
	begun, err := actions[0].Done(ctx, pc)
	if err != nil || begun {
		return summary + "; resuming a revert", err
	}
	failing, err := (&verify.Verifier{Client: o.client}).Failing(ctx)
	if err != nil {
		return "", err
	}
	if failing != "" {
		return "", fmt.Errorf("the self-hosted control plane is not healthy, fix it first (verify: %s)", failing)
	}
	return summary + "; verify passes", nil
}
