package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/e2e-framework/klient/wait"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/browser"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drillreport"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Targets from the recovery issue.
const (
	apiBackAfterDrill       = 45 * time.Second
	recoveryAfterAllRestart = 150 * time.Second
	// badFlag is an API server flag that does not exist.
	badFlag = "--selfhost-e2e-no-such-flag=true"
)

// drillRuns is how many times the API server drill and the restart of every
// control-plane node run, for a median (E2E_DRILL_RUNS, default 3).
var drillRuns = func() int {
	if n, err := strconv.Atoi(os.Getenv("E2E_DRILL_RUNS")); err == nil && n > 0 {
		return n
	}
	return 3
}()

// runsOf is how many times a drill repeats on the cluster under test.
func runsOf(ctx context.Context) int {
	if n := stateOf(ctx).runs; n > 0 {
		return n
	}
	return drillRuns
}

// requirePivotedCluster is TestRecovery's setup. It skips the test unless the
// control plane is self-hosted, takes the canaries of a kept cluster as they
// are, and wants verify passing before anything is broken.
func requirePivotedCluster(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	_, err := clientset(t, cfg).AppsV1().DaemonSets(kube.Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t.Skip("the control plane is not self-hosted: TestPivot did not run or failed")
	}
	if err != nil {
		t.Fatal(err)
	}
	if s := stateOf(ctx); s.canaryDigest == "" { // a reused cluster (E2E_KEEP=1): take its canaries as they are
		s.canaryDigest = canaryDigest(ctx, t, clientset(t, cfg))
	}
	mustVerify(ctx, t, cfg, 5*time.Minute)
	return ctx
}

// drillResult is the part of `verify --drill -o json` the suite reads.
type drillResult struct {
	verify.Report
	Drill struct {
		Passed         bool    `json:"passed"`
		Error          string  `json:"error"`
		Requests       int     `json:"requests"`
		FailedRequests int     `json:"failedRequests"`
		LongestGap     float64 `json:"longestGapSeconds"`
		APIBack        float64 `json:"apiBackSeconds"`
		APISteady      float64 `json:"apiSteadySeconds"`
		DaemonSetReady float64 `json:"daemonSetReadySeconds"`
		SteppedDown    float64 `json:"steppedDownSeconds"`
		Settled        float64 `json:"settledSeconds"`
	} `json:"drill"`
}

// deleteEveryAPIServerPod runs `verify --drill apiserver`, which deletes
// every API server pod at once, and wants the API back within its target.
func deleteEveryAPIServerPod(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	var back, recovered []float64
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= runsOf(ctx); run++ {
		report := filepath.Join(artifactsDir, fmt.Sprintf("%sdrill-apiserver-run%d.html", stateOf(ctx).prefix, run))
		stdout, stderr, err := selfhostSplit(ctx, cfg, "verify", "--drill", "apiserver", "--yes", "-o", "json",
			"--max-recovery", apiBackAfterDrill.String(), "--report", report)
		var r drillResult
		if jerr := json.Unmarshal([]byte(stdout), &r); jerr != nil {
			t.Fatalf("run %d: verify --drill: %v, output not JSON (%v):\n%s\n%s", run, err, jerr, stdout, stderr)
		}
		d := r.Drill
		t.Logf("run %d: %d of %d requests failed, longest gap %.1fs, API back after %.1fs (steady after %.1fs), DaemonSet Ready after %.1fs, checkpoints stepped down after %.1fs, checks passed after %.1fs",
			run, d.FailedRequests, d.Requests, d.LongestGap, d.APIBack, d.APISteady, d.DaemonSetReady, d.SteppedDown, d.Settled)
		if err != nil || !r.Passed {
			t.Fatalf("run %d: verify --drill apiserver failed (%v): %s %s\n%s", run, err, d.Error, r.Failing(), stderr)
		}
		if time.Duration(d.APIBack*float64(time.Second)) > apiBackAfterDrill {
			t.Errorf("run %d: the API came back after %.1fs, over the %s target", run, d.APIBack, apiBackAfterDrill)
		}
		back, recovered = append(back, d.APIBack), append(recovered, d.DaemonSetReady)
		checkDrillReport(ctx, t, report, d.FailedRequests)
		checkCanaries(ctx, t, cfg)
	}
	t.Logf("median of %d runs: API back after %.1fs, DaemonSet Ready after %.1fs", runsOf(ctx), median(back), median(recovered))
	return ctx
}

// checkDrillReport opens a drill's HTML report in headless Chromium: the
// page it renders must draw the timeline and show the JSON's failed-request
// count. A screenshot lands beside it.
func checkDrillReport(ctx context.Context, t *testing.T, report string, failed int) {
	t.Helper()
	c, err := browser.Find()
	if err != nil {
		t.Errorf("cannot check the drill report %s: %v", report, err)
		return
	}
	dom, err := c.DOM(ctx, report)
	if err != nil {
		t.Errorf("drill report: %v", err)
		return
	}
	shown, err := drillreport.ShownFailedRequests(dom)
	switch {
	case err != nil:
		t.Errorf("drill report %s: %v", report, err)
	case shown != failed:
		t.Errorf("drill report %s shows %d failed requests, the JSON %d", report, shown, failed)
	case drillreport.TimelineFailures(dom) != failed:
		t.Errorf("drill report %s draws %d failed requests on its timeline, the JSON has %d", report, drillreport.TimelineFailures(dom), failed)
	}
	shot := strings.TrimSuffix(report, ".html") + ".png"
	if err := c.Screenshot(ctx, report, shot, 1080, 1100); err != nil {
		t.Errorf("drill report: %v", err)
	}
	t.Logf("drill report %s (screenshot %s): the browser shows %d failed requests, as the JSON", report, shot, shown)
}

// rollOutBadAPIServer rolls out an API server that cannot start and wants the
// API to stay up, the bad spec never checkpointed, and the rollback to heal.
func rollOutBadAPIServer(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	client := clientset(t, cfg)
	dss := client.AppsV1().DaemonSets(kube.Namespace)
	patch := func(ops string) {
		t.Helper()
		if _, err := dss.Patch(ctx, "kube-apiserver", types.JSONPatchType, []byte(ops), metav1.PatchOptions{}); err != nil {
			t.Fatalf("patching the kube-apiserver DaemonSet: %v", err)
		}
	}
	p, err := startProber(cfg.KubeconfigFile())
	if err != nil {
		t.Fatal(err)
	}
	patch(`[{"op":"add","path":"/spec/template/spec/containers/0/command/-","value":"` + badFlag + `"}]`)
	bad := waitCrashLooping(ctx, t, client, 3*time.Minute)
	t.Logf("the bad pod %s crash-loops on %s", bad.Name, bad.Spec.NodeName)
	// Give a checkpointer every chance to take the bad spec: longer than
	// the time a good parent needs to be checkpointed.
	time.Sleep(45 * time.Second)
	assertNoCheckpointHas(ctx, t, badFlag)
	total, failed, longest, errs := p.result()
	t.Logf("during the bad rollout: %d requests, %d failed, longest gap %s", total, failed, longest.Round(time.Millisecond))
	if longest > maxAPIGap {
		t.Errorf("the API was unreachable for %s during a one-node bad rollout: %v", longest, errs)
	}

	ds, err := dss.Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := len(ds.Spec.Template.Spec.Containers[0].Command) - 1
	if ds.Spec.Template.Spec.Containers[0].Command[last] != badFlag {
		t.Fatalf("the bad flag is not the last argument any more: %v", ds.Spec.Template.Spec.Containers[0].Command)
	}
	patch(fmt.Sprintf(`[{"op":"test","path":"/spec/template/spec/containers/0/command/%d","value":"%s"},{"op":"remove","path":"/spec/template/spec/containers/0/command/%d"}]`, last, badFlag, last))
	start := time.Now()
	mustVerify(ctx, t, cfg, 5*time.Minute)
	t.Logf("rolled back; verify passed %s later", time.Since(start).Round(time.Second))
	assertNoCheckpointHas(ctx, t, badFlag)
	checkCanaries(ctx, t, cfg)
	return ctx
}

// waitCrashLooping waits for an API server pod that has restarted.
func waitCrashLooping(ctx context.Context, t *testing.T, client kubernetes.Interface, within time.Duration) corev1.Pod {
	t.Helper()
	var bad corev1.Pod
	restarted := func(context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-apiserver"})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount > 0 && slices.Contains(p.Spec.Containers[0].Command, badFlag) {
					bad = p
					return true, nil
				}
			}
		}
		return false, nil
	}
	if err := wait.For(restarted, polling(ctx, 2*time.Second, within)...); err != nil {
		t.Fatalf("no API server pod with %s crash-looped within %s", badFlag, within)
	}
	return bad
}

// assertNoCheckpointHas greps every checkpoint on every control-plane node.
func assertNoCheckpointHas(ctx context.Context, t *testing.T, needle string) {
	t.Helper()
	for _, n := range controlPlaneContainers(ctx, t) {
		out, _ := exec.CommandContext(ctx, "docker", "exec", n, "sh", "-c",
			"grep -l -r -F -e '"+needle+"' /etc/kubernetes/manifests /etc/kubernetes/inactive-manifests 2>/dev/null || true").CombinedOutput()
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("%s: a checkpoint holds %s: %s", n, needle, s)
		}
	}
}

// moveParentOffNode moves a checkpointed parent off one node and wants its
// checkpoint removed there and kept inactive on the others.
func moveParentOffNode(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	client := clientset(t, cfg)
	const name = "drill-parent"
	ds := parentDaemonSet(name)
	if _, err := client.AppsV1().DaemonSets(kube.Namespace).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer client.AppsV1().DaemonSets(kube.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	nodes := controlPlaneContainers(ctx, t)
	parents := waitCheckpointed(ctx, t, client, name, nodes, 3*time.Minute)
	victim := nodes[0]
	t.Logf("checkpointed on every control-plane node: %v; moving it off %s", parents, victim)

	// Labelling the node, not editing the template, moves the parent: a
	// new template would roll every node's pod, not only the victim's.
	label := func(op string) {
		t.Helper()
		patch := `{"metadata":{"labels":{"` + evictLabel + `":` + op + `}}}`
		if _, err := client.CoreV1().Nodes().Patch(ctx, victim, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("labelling %s: %v", victim, err)
		}
	}
	label(`"true"`)
	defer label("null")
	start := time.Now()
	var phase checkpoint.Phase
	var files string
	removed := func(context.Context) (bool, error) {
		st, err := checkpoint.ReadNodeStatus(ctx, client.CoreV1().ConfigMaps(kube.Namespace), victim)
		phase = st.Phase(parents[victim])
		if phase == checkpoint.PhaseActive {
			return false, fmt.Errorf("the checkpoint of %s on %s became active though the API moved it away", parents[victim], victim)
		}
		files = nodeFiles(ctx, t, victim, parents[victim])
		return err == nil && (phase == checkpoint.PhaseNone || phase == checkpoint.PhaseRemoved) && files == "", nil
	}
	if err := wait.For(removed, polling(ctx, time.Second, 3*time.Minute)...); err != nil {
		if phase == checkpoint.PhaseActive {
			t.Fatal(err)
		}
		t.Fatalf("the checkpoint of %s on %s was not removed within 3m (phase %s, files %q)", parents[victim], victim, phase, files)
	}
	t.Logf("its checkpoint on %s was removed %s after the move", victim, time.Since(start).Round(time.Second))
	for _, n := range nodes[1:] {
		st, err := checkpoint.ReadNodeStatus(ctx, client.CoreV1().ConfigMaps(kube.Namespace), n)
		if err != nil || st.Phase(parents[n]) != checkpoint.PhaseInactive {
			t.Errorf("%s: the checkpoint of %s is %s (%v), want inactive", n, parents[n], st.Phase(parents[n]), err)
		}
	}
	checkCanaries(ctx, t, cfg)
	return ctx
}

// evictLabel on a node moves drill-parent off it.
const evictLabel = "e2e.selfhost.dev/no-drill-parent"

// parentDaemonSet asks for a checkpoint of a pause-like pod on each control-plane node.
func parentDaemonSet(name string) *appsv1.DaemonSet {
	labels := map[string]string{"app": name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kube.Namespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{checkpoint.CheckpointAnnotation: "true"}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{kube.ControlPlaneLabel: ""},
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
							MatchExpressions: []corev1.NodeSelectorRequirement{{Key: evictLabel, Operator: corev1.NodeSelectorOpDoesNotExist}},
						}}},
					}},
					Tolerations:                   []corev1.Toleration{{Key: controlPlaneTaint, Effect: corev1.TaintEffectNoSchedule}},
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name: "sleep", Image: busyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"sleep", "86400"},
					}},
				},
			},
		},
	}
}

// waitCheckpointed waits for an inactive checkpoint of the DaemonSet's pod on
// every node and returns node -> pod.
func waitCheckpointed(ctx context.Context, t *testing.T, client kubernetes.Interface, ds string, nodes []string, within time.Duration) map[string]string {
	t.Helper()
	var parents map[string]string
	ok := 0
	everyNode := func(context.Context) (bool, error) {
		parents = map[string]string{}
		pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + ds})
		if err == nil {
			for _, p := range pods.Items {
				parents[p.Spec.NodeName] = p.Name
			}
		}
		ok = 0
		for _, n := range nodes {
			st, err := checkpoint.ReadNodeStatus(ctx, client.CoreV1().ConfigMaps(kube.Namespace), n)
			if err == nil && parents[n] != "" && st.Phase(parents[n]) == checkpoint.PhaseInactive {
				ok++
			}
		}
		return ok == len(nodes), nil
	}
	if err := wait.For(everyNode, polling(ctx, 2*time.Second, within)...); err != nil {
		t.Fatalf("%d of %d nodes checkpointed %s within %s", ok, len(nodes), ds, within)
	}
	return parents
}

// restartNodeWhileAPIDown stops every kubelet, kills every API server, and
// restarts one node: its checkpoint alone must bring the API back.
func restartNodeWhileAPIDown(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	nodes := controlPlaneContainers(ctx, t)
	victim := nodes[len(nodes)-1]
	quick := quickClient(t, cfg)
	// Stop every kubelet, so nothing restarts an API server, then kill them all.
	for _, n := range nodes {
		nodeShell(ctx, t, n, "systemctl stop kubelet")
	}
	defer func() { // whatever happens, give the cluster its kubelets back
		for _, n := range nodes {
			exec.Command("docker", "exec", n, "systemctl", "start", "kubelet").Run()
		}
	}()
	for _, n := range nodes {
		nodeShell(ctx, t, n, `for id in $(ctr -n k8s.io containers ls | awk '$2 ~ /kube-apiserver:/ {print $1}'); do ctr -n k8s.io tasks kill -s SIGKILL "$id" 2>/dev/null || true; done`)
	}
	stopsAnswering := func(context.Context) (bool, error) {
		_, err := quick.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err != nil, nil
	}
	if err := wait.For(stopsAnswering, polling(ctx, 500*time.Millisecond, 30*time.Second)...); err != nil {
		t.Fatal("the API still answers 30 s after every API server was killed")
	}
	t.Logf("every API server is down; restarting %s", victim)
	start := time.Now()
	docker(ctx, t, "restart", victim)
	back := waitAPI(ctx, t, quick, start, 3*time.Minute)
	t.Logf("the API answered through the load balancer %s after %s was restarted, from its checkpoint", back.Round(time.Second), victim)
	if out := nodeShell(ctx, t, victim, "ls /etc/kubernetes/manifests"); !strings.Contains(out, "kube-system-kube-apiserver-") {
		t.Errorf("%s runs no API server checkpoint; its manifests: %s", victim, out)
	}
	for _, n := range nodes {
		nodeShell(ctx, t, n, "systemctl start kubelet")
	}
	waitReported(ctx, t, quick, []string{victim}, start, 5*time.Minute)
	mustVerify(ctx, t, cfg, 5*time.Minute-time.Since(start))
	t.Logf("verify passed %s after the restart", time.Since(start).Round(time.Second))
	checkCanaries(ctx, t, cfg)
	return ctx
}

// restartEveryControlPlaneNode stops and starts every control-plane node at
// once and wants verify passing within the target.
func restartEveryControlPlaneNode(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	quick := quickClient(t, cfg)
	startDNSWatcher(ctx, t, quick)
	defer stopDNSWatcher(ctx, quick)
	var back, recovered, dnsBack []float64
	for run := 1; run <= runsOf(ctx); run++ {
		nodes := controlPlaneContainers(ctx, t) // in address order
		before := nodeAddresses(ctx, t, nodes)
		start := time.Now()
		// `docker stop` stops them in parallel; starting them in address
		// order gives each its address back, as a rebooted machine keeps its own.
		docker(ctx, t, append([]string{"stop", "--time", "10"}, nodes...)...)
		stopped := time.Since(start)
		for _, n := range nodes {
			docker(ctx, t, "start", n)
		}
		t.Logf("run %d: the nodes stopped after %.1fs and were started again after %.1fs", run, stopped.Seconds(), time.Since(start).Seconds())
		if after := nodeAddresses(ctx, t, nodes); !slices.Equal(after, before) {
			t.Fatalf("the nodes came back with other addresses: %v, were %v", after, before)
		}
		api := waitAPI(ctx, t, quick, start, recoveryAfterAllRestart)
		func() {
			defer logHandOvers(ctx, t, quick, start, run) // also when verify fails: where did the time go?
			waitReported(ctx, t, quick, nodes, start, recoveryAfterAllRestart-time.Since(start))
			mustVerify(ctx, t, cfg, recoveryAfterAllRestart-time.Since(start))
		}()
		all := time.Since(start)
		t.Logf("run %d: the API answered after %s; verify passed after %s", run, api.Round(time.Second), all.Round(time.Second))
		if all > recoveryAfterAllRestart { // mustVerify lets a run that began in time finish after it
			t.Errorf("run %d: verify passed after %s, over the %s target", run, all.Round(time.Second), recoveryAfterAllRestart)
		}
		back, recovered = append(back, api.Seconds()), append(recovered, all.Seconds())
		dns, silence, ok := dnsBackAfter(dnsAnswers(ctx, t, quick, start), start, start.Add(api))
		switch {
		case !ok:
			t.Errorf("run %d: DNS never answered from the worker after the API came back", run)
		case dns > dnsBackTarget:
			t.Errorf("run %d: DNS answered from the worker %s after the API, over the %s target", run, dns.Round(100*time.Millisecond), dnsBackTarget)
		}
		t.Logf("run %d: DNS answered from the worker %.1fs after the API came back (longest silence %.1fs)", run, dns.Seconds(), silence.Seconds())
		dnsBack = append(dnsBack, dns.Seconds())
		checkCanaries(ctx, t, cfg)
	}
	t.Logf("median of %d runs: API back after %.0fs, verify passed after %.0fs, DNS answered from the worker %.1fs after the API",
		runsOf(ctx), median(back), median(recovered), median(dnsBack))
	return ctx
}

// logHandOvers logs, for each node, when its API server pod last became
// Ready and its checkpoint's phase with the time it entered it (as the
// checkpointer acting now saw it), counted from start.
func logHandOvers(ctx context.Context, t *testing.T, client kubernetes.Interface, start time.Time, run int) {
	pods, err := client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.AppSelector("kube-apiserver")})
	if err != nil {
		t.Logf("run %d: cannot list the API server pods: %v", run, err)
		return
	}
	for _, p := range pods.Items {
		if checkpoint.CheckpointOf(&p) != "" {
			continue // a checkpoint's mirror pod
		}
		ready := "not Ready"
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = fmt.Sprintf("Ready after %.0fs", c.LastTransitionTime.Sub(start).Seconds())
			}
		}
		cp := "no status"
		if st, err := checkpoint.ReadNodeStatus(ctx, client.CoreV1().ConfigMaps(kube.Namespace), p.Spec.NodeName); err == nil {
			if c, ok := st.Checkpoint(p.Name); ok {
				cp = fmt.Sprintf("%s after %.0fs", c.Phase, c.Since.Sub(start).Seconds())
			}
		}
		t.Logf("run %d: %s: %s %s, its checkpoint %s", run, p.Spec.NodeName, p.Name, ready, cp)
	}
}

// removeAndReinstallCheckpointer deletes the checkpointer's DaemonSet, wants
// every checkpoint gone with no outage, and bootstrap to reinstall it.
func removeAndReinstallCheckpointer(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
	client := clientset(t, cfg)
	p, err := startProber(cfg.KubeconfigFile())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := client.AppsV1().DaemonSets(kube.Namespace).Delete(ctx, "pod-checkpointer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes := controlPlaneContainers(ctx, t)
	var left map[string]string
	noneLeft := func(context.Context) (bool, error) {
		left = map[string]string{}
		for _, n := range nodes {
			if files := nodeFiles(ctx, t, n, "kube-system-"); files != "" {
				left[n] = files
			}
		}
		return len(left) == 0, nil
	}
	if err := wait.For(noneLeft, polling(ctx, 2*time.Second, 4*time.Minute-time.Since(start))...); err != nil {
		t.Fatalf("checkpoints left 4m after the checkpointer was deleted: %v", left)
	}
	total, failed, longest, errs := p.result()
	t.Logf("every checkpoint was removed %s after the DaemonSet was deleted; the API meanwhile: %d requests, %d failed, longest gap %s",
		time.Since(start).Round(time.Second), total, failed, longest.Round(time.Millisecond))
	if longest > maxAPIGap {
		t.Errorf("the API was unreachable for %s while the checkpointer left: %v", longest.Round(time.Millisecond), errs)
	}
	out, err := selfhost(ctx, cfg, "bootstrap", "--metrics-kubelet-insecure-tls")
	if err != nil {
		t.Fatalf("bootstrap did not reinstall the checkpointer: %v\n%s", err, out)
	}
	mustVerify(ctx, t, cfg, 5*time.Minute)
	t.Logf("bootstrap reinstalled it; verify passed %s after the deletion", time.Since(start).Round(time.Second))
	checkCanaries(ctx, t, cfg)
	return ctx
}

// nodeFiles lists the checkpoint files on node whose names contain part.
func nodeFiles(ctx context.Context, t *testing.T, node, part string) string {
	t.Helper()
	return strings.TrimSpace(nodeShell(ctx, t, node,
		"ls /etc/kubernetes/manifests /etc/kubernetes/inactive-manifests 2>/dev/null | grep -F -e '"+part+"' || true"))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// selfhostSplit runs the plugin and returns its stdout and stderr apart.
func selfhostSplit(ctx context.Context, cfg *envconf.Config, args ...string) (string, string, error) {
	var stdout, stderr strings.Builder
	cmd := exec.CommandContext(ctx, pluginPath(), append(args, "--kubeconfig", cfg.KubeconfigFile())...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
