package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

// VerifyOptions are the inputs of `kubectl selfhost verify`.
type VerifyOptions struct {
	genericiooptions.IOStreams
	configFlags   *genericclioptions.ConfigFlags
	Output        string
	Expect        string
	ProbeImage    string
	ClusterDomain string
	Timeout       time.Duration
	// Drill names an active recovery drill to run before the checks.
	Drill       string
	Yes         bool
	MaxRecovery time.Duration
	// Report is a file for the drill's HTML report.
	Report string

	client kubernetes.Interface
	probe  func(context.Context) error
}

// NewVerifyCommand returns `kubectl selfhost verify`.
func NewVerifyCommand(streams genericiooptions.IOStreams, configFlags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &VerifyOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove the control plane is self-hosted and ready to recover",
		Long: `Verify reads the cluster through the API and checks that:
  - every node is Ready;
  - kube-apiserver is a ready DaemonSet with one pod per control-plane node;
  - kube-controller-manager and kube-scheduler are ready Deployments with PodDisruptionBudgets;
  - no static manifest is left for them (etcd stays static);
  - pod-checkpointer is Ready on every control-plane node and holds an
    inactive checkpoint of each API server pod;
  - flannel is ready on every node, and DNS resolves from a probe pod.
It exits 0 only when every check passes.

--expect static checks a static control plane instead, as revert leaves it:
a Ready static kube-apiserver, kube-controller-manager and kube-scheduler on
every control-plane node, no self-hosted workload, no pod-checkpointer and no
running checkpoint, flannel and DNS.

--drill apiserver first deletes every kube-apiserver pod at once and measures
how long the cluster takes to bring itself back through its checkpoints, then
waits for the checks to pass again before it runs them. --report writes the
drill's timeline as an HTML page that needs no network. It asks before acting
(or takes --yes), refuses a cluster with fewer than 2 control-plane nodes
ready to take over, and fails over --max-recovery.`,
		Example: `  kubectl selfhost verify
  kubectl selfhost verify -o json
  kubectl selfhost verify --expect static
  kubectl selfhost verify --drill apiserver --yes --max-recovery 45s
  kubectl selfhost verify --drill apiserver --yes --report drill.html`,
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
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json (default: a table)")
	cmd.Flags().StringVar(&o.Expect, "expect", verify.ExpectSelfHosted, "what the control plane should be: "+verify.ExpectSelfHosted+", or "+verify.ExpectStatic+" (static pods with no checkpointer, as revert leaves it)")
	cmd.Flags().StringVar(&o.ProbeImage, "probe-image", images.ProbeImage, "image of the DNS probe pod (it runs nslookup)")
	cmd.Flags().StringVar(&o.ClusterDomain, "cluster-domain", "", "cluster DNS domain (default: kubeadm's dnsDomain, else "+cluster.DefaultDomain+")")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long the DNS probe pod, and each phase of a drill, may take")
	cmd.Flags().StringVar(&o.Drill, "drill", "", "run an active recovery drill first: apiserver (deletes every API server pod)")
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "run the drill without asking")
	cmd.Flags().DurationVar(&o.MaxRecovery, "max-recovery", 45*time.Second, "fail the drill when the API takes longer to answer again")
	cmd.Flags().StringVar(&o.Report, "report", "", "with --drill, write the drill's timeline and figures to this file as a self-contained HTML page")
	return cmd
}

// Validate rejects bad flags before contacting the cluster.
func (o *VerifyOptions) Validate() error {
	if o.Output != "" && o.Output != "json" {
		return fmt.Errorf("--output %q is not supported: use json, or nothing for a table", o.Output)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive")
	}
	if o.Expect != verify.ExpectSelfHosted && o.Expect != verify.ExpectStatic {
		return fmt.Errorf("--expect must be %s or %s, not %q", verify.ExpectSelfHosted, verify.ExpectStatic, o.Expect)
	}
	if o.Drill != "" && o.Expect == verify.ExpectStatic {
		return fmt.Errorf("--drill needs a self-hosted control plane; it cannot run with --expect %s", verify.ExpectStatic)
	}
	if o.Drill != "" && o.Drill != "apiserver" {
		return fmt.Errorf("--drill %q is not a drill: the one drill is apiserver", o.Drill)
	}
	if o.MaxRecovery <= 0 {
		return fmt.Errorf("--max-recovery must be positive")
	}
	if o.Report != "" && o.Drill == "" {
		return fmt.Errorf("--report writes a drill's report: add --drill apiserver")
	}
	return nil
}

// Complete builds the client from kubectl's flags, and a drill's clients.
func (o *VerifyOptions) Complete() error {
	cfg, client, err := clientsFor(o.configFlags)
	if err != nil {
		return err
	}
	o.client = client
	if o.Drill == "" {
		return nil
	}
	o.client, o.probe, err = drillClients(cfg)
	return err
}

// Run prints the report; a failed check makes the command fail.
func (o *VerifyOptions) Run(ctx context.Context) error {
	v := &verify.Verifier{
		Client:        o.client,
		ClusterDomain: o.ClusterDomain,
		Expect:        o.Expect,
		DNS:           &verify.PodDNSProber{Client: o.client, Namespace: "default", Image: o.ProbeImage, Timeout: o.Timeout},
	}
	var outcome *drillOutcome
	if o.Drill != "" {
		var err error
		if outcome, err = o.runDrill(ctx, v); err != nil {
			return err
		}
		if err := o.writeReport(outcome); err != nil {
			return err
		}
	}
	report, err := v.Run(ctx)
	if err != nil {
		return fmt.Errorf("cannot verify the cluster: %w", err)
	}
	if err := o.print(report, outcome); err != nil {
		return err
	}
	switch {
	case outcome != nil && !outcome.Passed:
		return fmt.Errorf("the %s drill failed: %s", outcome.Name, outcome.Error)
	case !report.Passed:
		return fmt.Errorf("verification failed: %s", report.Summary)
	}
	return nil
}
