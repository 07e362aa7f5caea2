package cmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/check"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drill"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drillreport"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

func TestVerifyDrillFlagsAreCheckedFirst(t *testing.T) {
	for args, want := range map[string]string{
		"--drill etcd":                          `--drill "etcd" is not a drill: the one drill is apiserver`,
		"--drill apiserver --max-recovery 0s":   "--max-recovery must be positive",
		"--drill apiserver --max-recovery -10s": "--max-recovery must be positive",
		"--report drill.html":                   "--report writes a drill's report: add --drill apiserver",
	} {
		_, err := run(t, append([]string{"verify"}, strings.Fields(args)...)...)
		if err == nil || err.Error() != want {
			t.Errorf("verify %s: got %v, want %q", args, err, want)
		}
	}
}

// Off a terminal the drill runs only with --yes, and a refusal deletes nothing.
func TestVerifyDrillAsksOrNeedsYes(t *testing.T) {
	if err := confirm(strings.NewReader("yes\n"), &strings.Builder{}, "This deletes every kube-apiserver pod.", "the drill"); err == nil ||
		!strings.Contains(err.Error(), "Pass --yes to run the drill without a prompt") {
		t.Errorf("a pipe answered the prompt: %v", err)
	}

	// One control-plane node and no checkpointer: the preflight refuses.
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-1", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-x", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-apiserver"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "kube-apiserver"}}},
			Spec:   corev1.PodSpec{NodeName: "cp-1"},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		},
	)
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	o := &VerifyOptions{IOStreams: streams, Drill: "apiserver", Yes: true, client: client}
	err := o.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "refusing to drill: 0 of 1 control-plane nodes hold a ready checkpoint") {
		t.Errorf("want the preflight's refusal, got %v", err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("a refused drill did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

// printed is a failed drill and its report, printed as the flags ask.
func printed(t *testing.T, output string) string {
	t.Helper()
	server := "https://selfhost-lb:6443"
	flags := genericclioptions.NewConfigFlags(false)
	flags.APIServer = &server
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &VerifyOptions{IOStreams: streams, configFlags: flags, Output: output}
	report := &verify.Report{Summary: "1 of 2 checks failed.", Results: check.Results{
		{Check: "nodes", Passed: true, Detail: "4 of 4 Ready (3 control-plane)"},
		{Check: "kube-scheduler PDB", Detail: "no PodDisruptionBudget kube-system/kube-scheduler"},
	}}
	outcome := &drillOutcome{Name: "apiserver", MaxRecovery: drill.Seconds(45 * time.Second), Error: "the API came back after 50s, over --max-recovery 45s",
		Result: &drill.Result{
			Deleted: []string{"kube-apiserver-a", "kube-apiserver-b"}, Requests: 240, FailedRequests: 200,
			LongestGap: drill.Seconds(50 * time.Second), APIBack: drill.Seconds(50 * time.Second), APISteady: drill.Seconds(51 * time.Second),
			DaemonSetReady: drill.Seconds(60 * time.Second), SteppedDown: drill.Seconds(70 * time.Second),
		}}
	if err := o.print(report, outcome); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestVerifyPrintsTheDrillThenOneLinePerCheck(t *testing.T) {
	want := `Drill apiserver: FAIL
  deleted 2 kube-apiserver pods: kube-apiserver-a, kube-apiserver-b
  API through https://selfhost-lb:6443: back after 50s (limit 45s), steady after 51s; 200 of 240 requests failed, longest gap 50s
  new API server pods Ready on every control-plane node after 1m0s
  checkpoints stepped down after 1m10s
  the API came back after 50s, over --max-recovery 45s

CHECK               STATUS  DETAIL
nodes               PASS    4 of 4 Ready (3 control-plane)
kube-scheduler PDB  FAIL    no PodDisruptionBudget kube-system/kube-scheduler
1 of 2 checks failed.
`
	if got := printed(t, ""); got != want {
		t.Errorf("printed:\n%s\nwant:\n%s", got, want)
	}
}

func TestVerifyJSONPutsTheDrillUnderDrill(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(printed(t, "json")), &doc); err != nil {
		t.Fatal(err)
	}
	d, _ := doc["drill"].(map[string]any)
	if d["name"] != "apiserver" || d["passed"] != false || d["apiBackSeconds"] != 50.0 || d["maxRecoverySeconds"] != 45.0 || d["settledSeconds"] != 0.0 {
		t.Errorf("drill %v", d)
	}
	results, _ := doc["results"].([]any)
	if len(results) != 2 || doc["summary"] != "1 of 2 checks failed." || doc["passed"] != false {
		t.Errorf("report %v", doc)
	}
	if r, _ := results[1].(map[string]any); len(r) != 3 || r["check"] != "kube-scheduler PDB" || r["passed"] != false {
		t.Errorf("result %v: want check, passed and detail only", r)
	}
}

// A failed drill still gets its report, with the failure and the figures.
func TestVerifyWritesTheReportOfAFailedDrill(t *testing.T) {
	file := filepath.Join(t.TempDir(), "drill.html")
	server := "https://selfhost-lb:6443"
	flags := genericclioptions.NewConfigFlags(false)
	flags.APIServer = &server
	streams, _, _, errOut := genericiooptions.NewTestIOStreams()
	o := &VerifyOptions{IOStreams: streams, configFlags: flags, Report: file}
	outcome := &drillOutcome{Name: "apiserver", MaxRecovery: drill.Seconds(45 * time.Second), Error: "the API came back after 50s, over --max-recovery 45s",
		Result: &drill.Result{Requests: 240, FailedRequests: 200, APIBack: drill.Seconds(50 * time.Second)}}
	if err := o.writeReport(outcome); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drillreport.ShownFailedRequests(string(page)); err != nil || n != 200 {
		t.Errorf("the report shows %d failed requests (%v), want 200", n, err)
	}
	for _, want := range []string{"FAIL", "over --max-recovery 45s", server} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if !strings.Contains(errOut.String(), "Drill report written to "+file) {
		t.Errorf("stderr %q does not name the report", errOut.String())
	}
}
