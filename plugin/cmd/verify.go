package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/verify"
)

// VerifyOptions are the inputs of `kubectl selfhost verify`.
type VerifyOptions struct {
	genericiooptions.IOStreams
	configFlags   *genericclioptions.ConfigFlags
	Output        string
	ProbeImage    string
	ClusterDomain string
	Timeout       time.Duration

	client kubernetes.Interface
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
It exits 0 only when every check passes.`,
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
	cmd.Flags().StringVar(&o.ProbeImage, "probe-image", images.ProbeImage, "image of the DNS probe pod (it runs nslookup)")
	cmd.Flags().StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long the DNS probe pod may take")
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
	return nil
}

// Complete builds the client from kubectl's flags.
func (o *VerifyOptions) Complete() error {
	_, client, err := clientsFor(o.configFlags)
	o.client = client
	return err
}

// Run prints the report; a failed check makes the command fail.
func (o *VerifyOptions) Run(ctx context.Context) error {
	v := &verify.Verifier{
		Client:        o.client,
		ClusterDomain: o.ClusterDomain,
		DNS:           &verify.PodDNSProber{Client: o.client, Namespace: "default", Image: o.ProbeImage, Timeout: o.Timeout},
	}
	report, err := v.Run(ctx)
	if err != nil {
		return fmt.Errorf("cannot verify the cluster: %w", err)
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printReport(o, report)
	}
	if !report.Passed {
		return fmt.Errorf("verification failed: %s", report.Summary)
	}
	return nil
}

func printReport(o *VerifyOptions, r *verify.Report) {
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHECK\tSTATUS\tDETAIL")
	for _, res := range r.Results {
		status := "FAIL"
		if res.Passed {
			status = "PASS"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", res.Check, status, res.Detail)
	}
	w.Flush()
	fmt.Fprintln(o.Out, r.Summary)
}
