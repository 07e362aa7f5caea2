package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pivot"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
)

// BootstrapOptions are the inputs of `kubectl selfhost bootstrap`.
type BootstrapOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags
	Pivot       pivot.Options
	DryRun      bool

	client  kubernetes.Interface
	dynamic dynamic.Interface
}

// NewBootstrapCommand returns `kubectl selfhost bootstrap`.
func NewBootstrapCommand(streams genericiooptions.IOStreams, configFlags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &BootstrapOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Pivot a live cluster's static-pod control plane to self-hosted workloads",
		Long: `Bootstrap pivots a kubeadm-shaped cluster to a self-hosted control plane, in
place, through the API:
  1. pod-checkpointer, Ready on every control-plane node;
  2. kube-apiserver as a DaemonSet built from the static pod's own spec, its
     credentials in Secret kube-system/kube-apiserver (--certs), Ready and
     checkpointed on every node; then the static manifests are moved to
     /etc/kubernetes/selfhost-backup/, one node at a time;
  3. kube-controller-manager and kube-scheduler as Deployments with
     PodDisruptionBudgets, the same way;
  4. kube-proxy and CoreDNS adopted, flannel (when no CNI runs), metrics-server;
  5. the recovery record: a copy of the kube-apiserver and pod-checkpointer
     DaemonSets in ConfigMap kube-system/selfhost-recovery, for recover.
etcd stays a static pod. Preflight checks run before anything changes. Every
step knows whether it is already done: rerunning is safe and resumes an
interrupted run.`,
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
	f.DurationVar(&o.Pivot.StepTimeout, "timeout", 5*time.Minute, "how long each step may take")
	f.StringVar(&o.Pivot.CheckpointerImage, "checkpointer-image", images.DefaultCheckpointer, "pod-checkpointer image")
	f.StringVar(&o.Pivot.ToolsImage, "tools-image", images.ProbeImage, "image of the short-lived node agents (needs sh, cp, mv, tr, awk, cat and sleep)")
	f.StringVar(&o.Pivot.AppsNamespace, "apps-namespace", "", "also create this namespace for the cluster's own apps")
	f.StringVar(&o.Pivot.Certs, "certs", pivot.CertsSecret, "where the API server's credentials come from: "+pivot.CertsSecret+
		" (Secret kube-system/"+pivot.APIServerSecret+", one serving certificate for every control-plane node, as bootkube did) or "+
		pivot.CertsHostPath+" (kubeadm's /etc/kubernetes/pki on each node)")
	f.BoolVar(&o.Pivot.MetricsKubeletInsecureTLS, "metrics-kubelet-insecure-tls", false, "let metrics-server accept self-signed kubelet certificates (kind's are)")
	return cmd
}

// Validate rejects bad flags before contacting the cluster.
func (o *BootstrapOptions) Validate() error {
	if o.Pivot.StepTimeout <= 0 {
		return fmt.Errorf("--timeout must be positive")
	}
	if o.Pivot.Certs != pivot.CertsSecret && o.Pivot.Certs != pivot.CertsHostPath {
		return fmt.Errorf("--certs must be %s or %s, not %q", pivot.CertsSecret, pivot.CertsHostPath, o.Pivot.Certs)
	}
	if ns := o.Pivot.AppsNamespace; ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("--apps-namespace %q is not a valid namespace name: %s", ns, errs[0])
		}
	}
	return checkAgentImages(o.Pivot)
}

// Complete builds the clients from kubectl's flags.
func (o *BootstrapOptions) Complete() (err error) {
	o.client, o.dynamic, err = applyClientsFor(o.configFlags, 0)
	return err
}

// Run checks, then pivots (or prints the plan).
func (o *BootstrapOptions) Run(ctx context.Context) error {
	start := time.Now()
	status := progress.NewStatus(o.Out, isTerminal(o.Out))
	cluster, err := pivot.Discover(ctx, o.client)
	if err != nil {
		return err
	}
	check := status.Start("Running preflight checks")
	if err := pivot.Preflight(ctx, o.client, cluster); err != nil {
		check.End(err)
		return fmt.Errorf("preflight: %w; nothing was changed", err)
	}
	check.End(nil)
	pc := pivot.NewContext(o.client, o.dynamic, status, o.Pivot, cluster)
	actions := pivot.Actions(cluster, o.Pivot)
	if o.DryRun {
		fmt.Fprintf(o.Out, "Plan for %d control-plane nodes (%s), nothing will be changed:\n", len(cluster.ControlPlane), cluster.Endpoint.Host)
		return pivot.Plan(ctx, pc, actions)
	}
	if err := runWithNodeAgents(ctx, pc, actions, o.ErrOut); err != nil {
		return fmt.Errorf("%w; run bootstrap again to resume", err)
	}
	fmt.Fprintf(o.Out, "The control plane is self-hosted (%s). Check it with: kubectl selfhost verify\n", time.Since(start).Round(time.Second))
	return nil
}

// checkAgentImages checks the references of the images that run on nodes.
func checkAgentImages(o pivot.Options) error {
	if err := images.CheckReference("--checkpointer-image", o.CheckpointerImage); err != nil {
		return err
	}
	return images.CheckReference("--tools-image", o.ToolsImage)
}

// runWithNodeAgents runs the actions, first removing the node agents a
// killed run left behind, and at the end this run's.
func runWithNodeAgents(ctx context.Context, pc *pivot.Context, actions []pivot.Action, errOut io.Writer) error {
	if err := pivot.RemoveAgents(ctx, pc); err != nil {
		return err
	}
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := pivot.RemoveAgents(cleanup, pc); err != nil {
			fmt.Fprintf(errOut, "warning: %v\n", err)
		}
	}()
	return pivot.Run(ctx, pc, actions)
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
