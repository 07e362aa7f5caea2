package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drill"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

// VerifyOptions are the inputs of `kubectl selfhost verify`.
type VerifyOptions struct {
	genericiooptions.IOStreams
	configFlags   *genericclioptions.ConfigFlags
	Output        string
	ProbeImage    string
	ClusterDomain string
	Timeout       time.Duration
	// Drill names an active recovery drill to run before the checks.
	Drill       string
	Yes         bool
	MaxRecovery time.Duration

	client kubernetes.Interface
	probe  func(context.Context) error
}

// drillReport is verify's JSON with the drill's measurements.
type drillReport struct {
	Drill *drillOutcome `json:"drill"`
	*verify.Report
}

type drillOutcome struct {
	Name string `json:"name"`
	*drill.Result
	MaxRecovery drill.Seconds `json:"maxRecoverySeconds"`
	Passed      bool          `json:"passed"`
	Error       string        `json:"error,omitempty"`
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

--drill apiserver first deletes every kube-apiserver pod at once and measures
how long the cluster takes to bring itself back through its checkpoints, then
waits for the checks to pass again before it runs them. It asks before acting
(or takes --yes), refuses a cluster with fewer than 2 control-plane nodes
ready to take over, and fails over --max-recovery.`,
		Example: `  kubectl selfhost verify
  kubectl selfhost verify -o json
  kubectl selfhost verify --drill apiserver --yes --max-recovery 45s`,
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
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long the DNS probe pod, and each phase of a drill, may take")
	cmd.Flags().StringVar(&o.Drill, "drill", "", "run an active recovery drill first: apiserver (deletes every API server pod)")
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "run the drill without asking")
	cmd.Flags().DurationVar(&o.MaxRecovery, "max-recovery", 45*time.Second, "fail the drill when the API takes longer to answer again")
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
	if o.Drill != "" && o.Drill != "apiserver" {
		return fmt.Errorf("--drill %q is not a drill: the one drill is apiserver", o.Drill)
	}
	if o.MaxRecovery <= 0 {
		return fmt.Errorf("--max-recovery must be positive")
	}
	return nil
}

// Complete builds the client from kubectl's flags.
func (o *VerifyOptions) Complete() error {
	cfg, client, err := clientsFor(o.configFlags)
	if err != nil {
		return err
	}
	o.client = client
	if o.Drill == "" {
		return nil
	}
	// The drill's probe gives up fast, so that it samples an outage finely;
	// its other reads must not hang on a half-dead API server either.
	probeCfg := rest.CopyConfig(cfg)
	probeCfg.Timeout, probeCfg.QPS, probeCfg.Burst = 2*time.Second, 50, 50
	probe, err := kubernetes.NewForConfig(probeCfg)
	if err != nil {
		return err
	}
	o.probe = func(ctx context.Context) error {
		_, err := probe.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 10 * time.Second
	o.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// Run prints the report; a failed check makes the command fail.
func (o *VerifyOptions) Run(ctx context.Context) error {
	v := &verify.Verifier{
		Client:        o.client,
		ClusterDomain: o.ClusterDomain,
		DNS:           &verify.PodDNSProber{Client: o.client, Namespace: "default", Image: o.ProbeImage, Timeout: o.Timeout},
	}
	var outcome *drillOutcome
	if o.Drill != "" {
		var err error
		if outcome, err = o.runDrill(ctx, v); err != nil {
			return err
		}
	}
	report, err := v.Run(ctx)
	if err != nil {
		return fmt.Errorf("cannot verify the cluster: %w", err)
	}
	if o.Output == "json" {
		var doc any = report
		if outcome != nil {
			doc = drillReport{Drill: outcome, Report: report}
		}
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		if outcome != nil {
			printDrill(o, outcome)
		}
		printReport(o, report)
	}
	switch {
	case outcome != nil && !outcome.Passed:
		return fmt.Errorf("the %s drill failed: %s", outcome.Name, outcome.Error)
	case !report.Passed:
		return fmt.Errorf("verification failed: %s", report.Summary)
	}
	return nil
}

// runDrill checks that the drill is survivable, asks, and runs it. An error
// means nothing was done; a failed drill is in the outcome.
func (o *VerifyOptions) runDrill(ctx context.Context, v *verify.Verifier) (*drillOutcome, error) {
	progressOut := o.Out
	if o.Output == "json" {
		progressOut = o.ErrOut // stdout stays one JSON document
	}
	d := &drill.APIServer{
		Client: o.client, Probe: o.probe, Status: progress.NewStatus(progressOut, isTerminal(progressOut)),
		Interval: 250 * time.Millisecond, StatusInterval: 2 * time.Second, Timeout: o.Timeout,
		Unsettled: v.Failing,
	}
	ready, err := d.Preflight(ctx)
	if err != nil {
		return nil, err
	}
	if !o.Yes {
		if err := confirm(o.In, o.ErrOut, fmt.Sprintf(
			"This deletes every kube-apiserver pod at once; %d control-plane nodes (%s) hold a checkpoint to take over.",
			len(ready), strings.Join(ready, ", "))); err != nil {
			return nil, err
		}
	}
	r, err := d.Run(ctx)
	out := &drillOutcome{Name: o.Drill, Result: r, MaxRecovery: drill.Seconds(o.MaxRecovery)}
	switch {
	case err != nil:
		out.Error = err.Error()
	case r.APIBack.Duration() > o.MaxRecovery:
		out.Error = fmt.Sprintf("the API came back after %s, over --max-recovery %s", r.APIBack, o.MaxRecovery)
	default:
		out.Passed = true
	}
	return out, nil
}

// confirm asks on a terminal; elsewhere only --yes will do.
func confirm(in io.Reader, out io.Writer, what string) error {
	if !isTerminal(in) {
		return fmt.Errorf("%s Pass --yes to run the drill without a prompt", what)
	}
	fmt.Fprintf(out, "%s\nType yes to go on: ", what)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(answer) != "yes" {
		return fmt.Errorf("drill cancelled; nothing was changed")
	}
	return nil
}

func printDrill(o *VerifyOptions, d *drillOutcome) {
	verdict := "PASS"
	if !d.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(o.Out, "Drill %s: %s\n", d.Name, verdict)
	if r := d.Result; r != nil {
		fmt.Fprintf(o.Out, "  deleted %d kube-apiserver pods: %s\n", len(r.Deleted), strings.Join(r.Deleted, ", "))
		fmt.Fprintf(o.Out, "  API through %s: back after %s (limit %s), steady after %s; %d of %d requests failed, longest gap %s\n",
			o.server(), r.APIBack, d.MaxRecovery, r.APISteady, r.FailedRequests, r.Requests, r.LongestGap)
		fmt.Fprintf(o.Out, "  new API server pods Ready on every control-plane node after %s\n", r.DaemonSetReady)
		if r.SteppedDown > 0 {
			fmt.Fprintf(o.Out, "  checkpoints stepped down after %s\n", r.SteppedDown)
		}
		if r.Settled > 0 {
			fmt.Fprintf(o.Out, "  every check but DNS passed after %s\n", r.Settled)
		}
	}
	if d.Error != "" {
		fmt.Fprintf(o.Out, "  %s\n", d.Error)
	}
	fmt.Fprintln(o.Out)
}

// server is the API endpoint the kubeconfig names.
func (o *VerifyOptions) server() string {
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return "the kubeconfig's server"
	}
	return cfg.Host
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
