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

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/upgrade"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

// UpgradeOptions are the inputs of `kubectl selfhost upgrade`.
type UpgradeOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Version     string
	Set         []string
	Timeout     time.Duration
	StepTimeout time.Duration
	AllowPull   bool
	DryRun      bool
	Yes         bool

	request upgrade.Request
	client  kubernetes.Interface
	dynamic dynamic.Interface
}

// NewUpgradeCommand returns `kubectl selfhost upgrade`.
func NewUpgradeCommand(streams genericiooptions.IOStreams, configFlags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &UpgradeOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "upgrade (--kubernetes-version vX.Y.Z | --set <component>.<flag>=<value>)...",
		Short: "Move the self-hosted control plane to a new version or new flags, with automatic rollback",
		Long: `Upgrade changes the self-hosted control plane through the API, one component
at a time: kube-apiserver, kube-controller-manager, kube-scheduler,
kube-proxy, then CoreDNS when its version moves with Kubernetes'.

The API server goes one node at a time: its new pod starts beside the old one
on the shared port, and the old pod goes only once the new one is Ready and
that node's pod-checkpointer holds a checkpoint of it. A component whose new
pod is not Ready within --timeout is rolled back to its previous revision, and
the command fails naming the node, the pod and the reason. A pod that never
became Ready is never checkpointed.

Preflight runs before anything changes: verify passes, the version path is
allowed (the same minor or the next one), every kubelet is within the version
skew policy, the nodes hold the new images, and etcd is healthy. A rerun
resumes an interrupted upgrade; a rerun after success changes nothing.
It asks first on a terminal; elsewhere pass --yes.`,
		Example: `  kubectl selfhost upgrade --kubernetes-version v1.37.2 --dry-run
  kubectl selfhost upgrade --kubernetes-version v1.37.2 --yes
  kubectl selfhost upgrade --set kube-apiserver.audit-log-maxage=7 --yes`,
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
	f.StringVar(&o.Version, "kubernetes-version", "", "Kubernetes version to move the control plane to (vX.Y.Z)")
	f.StringArrayVar(&o.Set, "set", nil, "a flag to set: <component>.<flag>=<value>, component kube-apiserver, kube-controller-manager or kube-scheduler (repeatable)")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long a new pod may take to be Ready before its component is rolled back")
	f.DurationVar(&o.StepTimeout, "step-timeout", 30*time.Minute, "how long one component's whole rollout, rollback included, may take")
	f.BoolVar(&o.AllowPull, "allow-pull", false, "let nodes pull images they lack instead of refusing")
	f.BoolVar(&o.DryRun, "dry-run", false, "print each component's image and flag changes, run the preflight checks, change nothing")
	f.BoolVar(&o.Yes, "yes", false, "upgrade without asking")
	return cmd
}

// Validate rejects bad flags before contacting the cluster.
func (o *UpgradeOptions) Validate() error {
	if o.Version == "" && len(o.Set) == 0 {
		return fmt.Errorf("nothing to upgrade: pass --kubernetes-version, --set, or both")
	}
	if o.Timeout <= 0 || o.StepTimeout <= 0 {
		return fmt.Errorf("--timeout and --step-timeout must be positive")
	}
	if o.Version != "" {
		v, err := upgrade.ParseVersion(o.Version)
		if err != nil {
			return err
		}
		o.request.Version = v
	}
	set, err := upgrade.ParseSet(o.Set)
	if err != nil {
		return err
	}
	if len(set) > 0 {
		o.request.Set = set
	}
	return nil
}

// Complete builds the clients from kubectl's flags.
func (o *UpgradeOptions) Complete() (err error) {
	o.client, o.dynamic, err = applyClientsFor(o.configFlags, 0)
	return err
}

// Run checks, shows the changes, asks, then upgrades.
func (o *UpgradeOptions) Run(ctx context.Context) error {
	start := time.Now()
	status := progress.NewStatus(o.Out, isTerminal(o.Out))
	c, err := upgrade.NewContext(ctx, o.client, o.dynamic, status, o.request, o.Timeout)
	if err != nil {
		return err
	}
	check := status.Start("Running preflight checks")
	changes, summary, err := o.preflight(ctx, c)
	if err != nil {
		check.End(err)
		return fmt.Errorf("preflight: %w; nothing was changed", err)
	}
	check.End(nil)
	fmt.Fprintf(o.Out, "  %s\n", summary)
	for _, ch := range changes {
		fmt.Fprintf(o.Out, "%s\n", ch)
	}
	actions := upgrade.Actions()
	if o.DryRun {
		fmt.Fprintf(o.Out, "Plan for %d control-plane nodes, nothing will be changed:\n", len(c.ControlPlane))
		return upgrade.Plan(ctx, c, actions)
	}
	if !o.Yes {
		if err := confirm(o.In, o.ErrOut, fmt.Sprintf("This %s on %s.", upgrade.Summary(changes), strings.Join(c.ControlPlane, ", ")), "the upgrade"); err != nil {
			return err
		}
	}
	if err := upgrade.Run(ctx, c, actions, o.StepTimeout); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "The control plane holds the upgrade (%s). Check it with: kubectl selfhost verify\n", time.Since(start).Round(time.Second))
	return nil
}

// preflight wants verify to pass, unless this request is already under
// way: an interrupted upgrade resumes from any state, and only its own
// request may resume it.
func (o *UpgradeOptions) preflight(ctx context.Context, c *upgrade.Context) ([]upgrade.Change, string, error) {
	under, err := upgrade.UnderWay(ctx, o.client)
	if err != nil {
		return nil, "", err
	}
	if under != nil && !upgrade.Same(*under, o.request) {
		return nil, "", fmt.Errorf("another upgrade is under way (annotation %s on DaemonSet kube-system/kube-apiserver): rerun it with its own flags to finish it first, "+
			"or give it up with: kubectl -n kube-system annotate daemonset kube-apiserver %s-", upgrade.Annotation, upgrade.Annotation)
	}
	changes, err := upgrade.Changes(ctx, c)
	if err != nil {
		return nil, "", err
	}
	summary, err := upgrade.Preflight(ctx, c, changes, o.AllowPull)
	if err != nil {
		return nil, "", err
	}
	if under != nil {
		return changes, summary + "; resuming the upgrade under way", nil
	}
	failing, err := (&verify.Verifier{Client: o.client}).Failing(ctx)
	if err != nil {
		return nil, "", err
	}
	if failing != "" {
		return nil, "", fmt.Errorf("the self-hosted control plane is not healthy, fix it first (verify: %s)", failing)
	}
	return changes, summary + "; verify passes", nil
}
