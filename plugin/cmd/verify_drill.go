package cmd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drill"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drillreport"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

const (
	// probeTimeout is short, so that the probe samples an outage finely.
	probeTimeout = 2 * time.Second
	// drillReadTimeout keeps the drill's other reads from hanging on a
	// half-dead API server.
	drillReadTimeout = 10 * time.Second
	// probeInterval is between the probe's reads of the API.
	probeInterval = 250 * time.Millisecond
	// drillStatusInterval is between reads of the checkpointers' status and
	// of the checks while the cluster settles.
	drillStatusInterval = 2 * time.Second
)

// drillOutcome is what a drill measured and whether it passed.
type drillOutcome struct {
	Name string `json:"name"`
	*drill.Result
	MaxRecovery drill.Seconds `json:"maxRecoverySeconds"`
	Passed      bool          `json:"passed"`
	Error       string        `json:"error,omitempty"`
}

// drillClients are a client whose every request times out, and the probe,
// which reads the API once and gives up fast.
func drillClients(cfg *rest.Config) (kubernetes.Interface, func(context.Context) error, error) {
	probeCfg := rest.CopyConfig(cfg)
	probeCfg.Timeout, probeCfg.QPS, probeCfg.Burst = probeTimeout, 50, 50
	probeClient, err := kubernetes.NewForConfig(probeCfg)
	if err != nil {
		return nil, nil, err
	}
	probe := func(ctx context.Context) error {
		_, err := probeClient.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = drillReadTimeout
	client, err := kubernetes.NewForConfig(cfg)
	return client, probe, err
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
		Interval: probeInterval, StatusInterval: drillStatusInterval, Timeout: o.Timeout,
		Unsettled: v.Failing,
	}
	ready, err := d.Preflight(ctx)
	if err != nil {
		return nil, err
	}
	if !o.Yes {
		if err := confirm(o.In, o.ErrOut, fmt.Sprintf(
			"This deletes every kube-apiserver pod at once; %d control-plane nodes (%s) hold a checkpoint to take over.",
			len(ready), strings.Join(ready, ", ")), "the drill"); err != nil {
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

// writeReport writes the drill's HTML report when --report asks for one,
// whether the drill passed or not.
func (o *VerifyOptions) writeReport(d *drillOutcome) error {
	if o.Report == "" {
		return nil
	}
	if d.Result == nil {
		fmt.Fprintf(o.ErrOut, "No drill report: the drill failed before it measured anything\n")
		return nil
	}
	var page bytes.Buffer
	err := drillreport.Write(&page, drillreport.Report{
		Name: d.Name, Endpoint: o.server(), Passed: d.Passed, Error: d.Error,
		MaxRecovery: d.MaxRecovery.Duration(), Result: d.Result, Generated: time.Now(),
	})
	if err == nil {
		err = os.WriteFile(o.Report, page.Bytes(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("cannot write the drill report to %s: %w", o.Report, err)
	}
	fmt.Fprintf(o.ErrOut, "Drill report written to %s\n", o.Report)
	return nil
}

// confirm asks on a terminal before the operation named by op (e.g. "the
// drill"); elsewhere only --yes will do.
func confirm(in io.Reader, out io.Writer, what, op string) error {
	if !isTerminal(in) {
		return fmt.Errorf("%s Pass --yes to run %s without a prompt", what, op)
	}
	fmt.Fprintf(out, "%s\nType yes to go on: ", what)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(answer) != "yes" {
		return fmt.Errorf("%s cancelled; nothing was changed", op)
	}
	return nil
}
