package cmd

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

// drillReport is verify's JSON with the drill's measurements.
type drillReport struct {
	Drill *drillOutcome `json:"drill"`
	*verify.Report
}

// print writes the report, after the drill's outcome when there is one, as
// JSON or as a table.
func (o *VerifyOptions) print(report *verify.Report, outcome *drillOutcome) error {
	if o.Output == "json" {
		var doc any = report
		if outcome != nil {
			doc = drillReport{Drill: outcome, Report: report}
		}
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	if outcome != nil {
		o.printDrill(outcome)
	}
	o.printReport(report)
	return nil
}

func (o *VerifyOptions) printDrill(d *drillOutcome) {
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

func (o *VerifyOptions) printReport(r *verify.Report) {
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
