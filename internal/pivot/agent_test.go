package pivot

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// runScript runs an agent script with /etc/kubernetes and /payload moved under root.
func runScript(t *testing.T, root, script string) {
	t.Helper()
	if out, err := tryScript(root, script); err != nil {
		t.Fatalf("script failed: %v\n%s", err, out)
	}
}

// tryScript runs the script in busybox's sh, as the tools image does, where
// the host has busybox.
func tryScript(root, script string) (string, error) {
	script = strings.ReplaceAll(script, "/etc/kubernetes", filepath.Join(root, "etc/kubernetes"))
	script = strings.ReplaceAll(script, "/payload", filepath.Join(root, "payload"))
	script = strings.ReplaceAll(script, "/proc/", filepath.Join(root, "proc")+"/")
	cmd := exec.Command("sh", "-euc", script)
	if bb, err := exec.LookPath("busybox"); err == nil {
		bin := filepath.Join(root, "bin")
		os.MkdirAll(bin, 0o755)
		for _, applet := range []string{"sh", "sha256sum", "mkdir", "cp", "mv", "echo", "tr", "awk", "cat", "sleep", "grep", "rm", "chmod"} {
			os.Symlink(bb, filepath.Join(bin, applet))
		}
		cmd = exec.Command(filepath.Join(bin, "sh"), "-euc", script)
		cmd.Env = []string{"PATH=" + bin}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAgentScriptsKeepKubeadmsOriginal(t *testing.T) {
	root := t.TempDir()
	manifests := filepath.Join(root, "etc/kubernetes/manifests")
	backup := filepath.Join(root, "etc/kubernetes/selfhost-backup")
	os.MkdirAll(manifests, 0o755)
	os.MkdirAll(filepath.Join(root, "payload"), 0o755)
	os.WriteFile(filepath.Join(manifests, "kube-apiserver.yaml"), []byte("kubeadm"), 0o600)
	os.WriteFile(filepath.Join(root, "payload/kube-apiserver.yaml"), []byte("shared"), 0o644)

	// Replace twice, as a resumed run would: the backup keeps kubeadm's file.
	for range 2 {
		runScript(t, root, swapStaticScript([]staticSwap{{file: "kube-apiserver.yaml", content: "shared"}}))
	}
	if got := read(t, filepath.Join(manifests, "kube-apiserver.yaml")); got != "shared" {
		t.Errorf("manifest is %q", got)
	}
	if got := read(t, filepath.Join(backup, "kube-apiserver.yaml")); got != "kubeadm" {
		t.Errorf("backup is %q, want kubeadm's original", got)
	}
	// Nothing is left where the kubelet reads.
	if entries, _ := os.ReadDir(manifests); len(entries) != 1 {
		t.Errorf("manifest dir holds %d files", len(entries))
	}

	// Remove twice: the kubelet's dir is empty, both versions are kept.
	for range 2 {
		runScript(t, root, removeStaticScript("kube-apiserver.yaml"))
	}
	if _, err := os.Stat(filepath.Join(manifests, "kube-apiserver.yaml")); !os.IsNotExist(err) {
		t.Error("the static manifest is still where the kubelet reads")
	}
	if read(t, filepath.Join(backup, "kube-apiserver.yaml")) != "kubeadm" || read(t, filepath.Join(backup, "kube-apiserver.yaml.port-sharing")) != "shared" {
		t.Error("the backup lost a version")
	}
}

func TestRemoveWithoutPriorReplaceMovesTheOriginal(t *testing.T) {
	root := t.TempDir()
	manifests := filepath.Join(root, "etc/kubernetes/manifests")
	os.MkdirAll(manifests, 0o755)
	os.WriteFile(filepath.Join(manifests, "kube-scheduler.yaml"), []byte("kubeadm"), 0o600)
	runScript(t, root, removeStaticScript("kube-scheduler.yaml"))
	if read(t, filepath.Join(root, "etc/kubernetes/selfhost-backup/kube-scheduler.yaml")) != "kubeadm" {
		t.Error("kubeadm's manifest was not moved to the backup")
	}
}

// fakeProcess is /proc/<pid> under root: its command line, its cgroup
// (naming its pod), and its host network's listening sockets as
// /proc/<pid>/net/tcp6 shows them.
func fakeProcess(t *testing.T, root, pid, pod string, listensOn int, args ...string) {
	t.Helper()
	dir := filepath.Join(root, "proc", pid)
	os.MkdirAll(filepath.Join(dir, "net"), 0o755)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(args, "\x00")+"\x00"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup"), []byte("12:pids:/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod"+pod+".slice/cri-containerd-"+pid+".scope\n"), 0o644)
	tcp6 := "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	if listensOn > 0 {
		tcp6 += fmt.Sprintf("   0: 00000000000000000000000000000000:%04X 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n", listensOn)
	}
	tcp6 += "   1: 0000000000000000FFFF00000500000A:192B 0000000000000000FFFF00000600000A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1\n"
	if err := os.WriteFile(filepath.Join(dir, "net", "tcp6"), []byte(tcp6), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A swap stops the old pods first and installs the new manifests only once
// their processes are gone. Of the processes, only kubeadm's API server,
// once the kubelet has made it stop listening, is asked again to exit: not
// the port-sharing one, not etcd.
func TestSwapWaitsForTheOldPodsAndEndsKubeadmsLingeringAPIServer(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox, as the tools image has")
	}
	root := t.TempDir()
	manifests := filepath.Join(root, "etc/kubernetes/manifests")
	os.MkdirAll(manifests, 0o755)
	os.MkdirAll(filepath.Join(root, "payload"), 0o755)
	for _, f := range []string{"kube-apiserver.yaml", "kube-scheduler.yaml"} {
		os.WriteFile(filepath.Join(manifests, f), []byte("kubeadm"), 0o600)
		os.WriteFile(filepath.Join(root, "payload", f), []byte("shared"), 0o644)
	}
	const apiPod, schedulerPod = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	fakeProcess(t, root, "4242", apiPod, 6443, "kube-apiserver", "--advertise-address=10.0.0.5", "--secure-port=6443")
	fakeProcess(t, root, "4243", schedulerPod, 10259, "kube-scheduler", "--bind-address=127.0.0.1")
	fakeProcess(t, root, "4343", "11112222333344445555666677778888", 6443, "kube-apiserver", "--permit-port-sharing=true")
	fakeProcess(t, root, "4444", "99990000aaaabbbbccccddddeeeeffff", 2379, "etcd", "--listen-client-urls=https://10.0.0.5:2379")
	signalled := filepath.Join(root, "signalled")
	// kill is the shell's: record the signal and end the fake process.
	fakeKill := fmt.Sprintf(`kill() { [ "$1" = -0 ] && return 0; echo "$@" >> %s; rm -rf /proc/$2; }`, signalled)

	// The kubelet stops both pods 300 ms after their manifests left; the
	// scheduler exits, the API server only stops listening.
	manifestsGone := make(chan time.Time, 1)
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(manifests, "kube-apiserver.yaml")); os.IsNotExist(err) {
				manifestsGone <- time.Now()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(filepath.Join(root, "proc/4242/net/tcp6"), []byte("  sl  local_address remote_address st\n"), 0o644)
		os.RemoveAll(filepath.Join(root, "proc/4243"))
	}()
	out, err := tryScript(root, fakeKill+"\n"+swapStaticScript([]staticSwap{
		{file: "kube-apiserver.yaml", content: "shared", oldPod: apiPod, apiServerPort: 6443},
		{file: "kube-scheduler.yaml", content: "shared", oldPod: schedulerPod},
	}))
	installed := time.Now()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := strings.TrimSpace(read(t, signalled)); got != "-TERM 4242" {
		t.Errorf("signals sent: %q, want -TERM 4242 only\n%s", got, out)
	}
	if took := installed.Sub(<-manifestsGone); took < 300*time.Millisecond+lingerDrain+kubeletSettle {
		t.Errorf("the new manifests went in %s after the old left: before the old API server stopped listening, drained for %s and the kubelet had %s", took, lingerDrain, kubeletSettle)
	}
	for _, f := range []string{"kube-apiserver.yaml", "kube-scheduler.yaml"} {
		if got := read(t, filepath.Join(manifests, f)); got != "shared" {
			t.Errorf("%s is %q", f, got)
		}
		if got := read(t, filepath.Join(root, "etc/kubernetes/selfhost-backup", f)); got != "kubeadm" {
			t.Errorf("backup of %s is %q", f, got)
		}
		if fi, err := os.Stat(filepath.Join(manifests, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600 as kubeadm writes it", f, fi, err)
		}
	}
}

// A swap cut short between its phases leaves the node without a manifest;
// the next agent on the node puts the staged one back.
func TestTheNextAgentPutsBackWhatAnInterruptedSwapStaged(t *testing.T) {
	root := t.TempDir()
	manifests := filepath.Join(root, "etc/kubernetes/manifests")
	staging := filepath.Join(root, "etc/kubernetes/selfhost-staging")
	os.MkdirAll(manifests, 0o755)
	os.MkdirAll(staging, 0o755)
	os.WriteFile(filepath.Join(staging, "kube-apiserver.yaml.next"), []byte("shared"), 0o644)
	os.WriteFile(filepath.Join(staging, "kube-apiserver.yaml.previous"), []byte("kubeadm"), 0o644)
	os.WriteFile(filepath.Join(staging, "kube-scheduler.yaml.next"), []byte("shared"), 0o644)
	os.WriteFile(filepath.Join(manifests, "kube-scheduler.yaml"), []byte("installed meanwhile"), 0o600)

	runScript(t, root, swapStaticScript(nil))
	if got := read(t, filepath.Join(manifests, "kube-apiserver.yaml")); got != "shared" {
		t.Errorf("kube-apiserver.yaml is %q, want the staged one back", got)
	}
	if got := read(t, filepath.Join(manifests, "kube-scheduler.yaml")); got != "installed meanwhile" {
		t.Errorf("a manifest in place was replaced by a staged one: %q", got)
	}
}

func TestAgentNamesAreStableAndValid(t *testing.T) {
	a := agentJob{Node: "selfhost-control-plane3", Purpose: "remove-kube-controller-manager"}
	if a.name() != a.name() || len(a.name()) > 63 {
		t.Errorf("name %q", a.name())
	}
	b := agentJob{Node: "selfhost-control-plane2", Purpose: a.Purpose}
	if a.name() == b.name() {
		t.Error("two nodes' agents share a name")
	}
	p := agentPod(a.name(), a, "busybox")
	if p.Spec.NodeName != a.Node || !*p.Spec.Containers[0].SecurityContext.Privileged {
		t.Error("agent not pinned to its node or not privileged")
	}
}

func TestReplaceRefusesAPayloadThatIsNotWhatWasSent(t *testing.T) {
	root := t.TempDir()
	manifests := filepath.Join(root, "etc/kubernetes/manifests")
	os.MkdirAll(manifests, 0o755)
	os.MkdirAll(filepath.Join(root, "payload"), 0o755)
	os.WriteFile(filepath.Join(manifests, "kube-apiserver.yaml"), []byte("kubeadm"), 0o600)
	os.WriteFile(filepath.Join(root, "payload/kube-apiserver.yaml"), []byte("tampered"), 0o644)

	out, err := tryScript(root, swapStaticScript([]staticSwap{{file: "kube-apiserver.yaml", content: "shared"}}))
	if err == nil || !strings.Contains(out, "is not what the plugin sent") {
		t.Fatalf("a changed payload was installed: %v %s", err, out)
	}
	if got := read(t, filepath.Join(manifests, "kube-apiserver.yaml")); got != "kubeadm" {
		t.Errorf("manifest is %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/selfhost-backup")); !os.IsNotExist(err) {
		t.Error("a refused payload changed the node")
	}
}

// The credentials agent runs with a token of minutes, reads the pki
// directory without writing it, and carries no key in its spec.
func TestTheCredentialsAgentIsConfinedAndCarriesNoKey(t *testing.T) {
	j := agentJob{Node: "cp1", Purpose: "store-apiserver-credentials", Args: []string{"node-credentials", "--item", "ca.crt=ca.crt"}}
	p := credentialsAgentPod(j.name(), j, "ghcr.io/kubectl-selfhost/pod-checkpointer:v0.1.0")
	c := p.Spec.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged != nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("security context %+v", sc)
	}
	if p.Spec.ServiceAccountName != credentialsAgent || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("account %q, automount %v", p.Spec.ServiceAccountName, *p.Spec.AutomountServiceAccountToken)
	}
	if *p.Spec.ActiveDeadlineSeconds <= 0 {
		t.Error("no deadline")
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("%s is mounted writable", m.MountPath)
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path != kubeadmPKI {
			t.Errorf("mounts %s", v.HostPath.Path)
		}
		if v.Projected != nil && *v.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds > 3600 {
			t.Errorf("token lives %ds", *v.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds)
		}
	}
	spec, _ := json.Marshal(p)
	if strings.Contains(string(spec), "BEGIN") || len(c.Env) > 0 {
		t.Error("key material or environment in the pod")
	}
}

func TestRemoveAgentsRemovesOnlyNodeAgents(t *testing.T) {
	left := agentPod("selfhost-agent-0123456789ab", agentJob{Node: "cp1"}, "busybox")
	left.Namespace = kube.Namespace
	payload := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: left.Name, Namespace: kube.Namespace, Labels: agentLabels}}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-cp1", Namespace: kube.Namespace, Labels: map[string]string{"component": "kube-apiserver"}}}
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: credentialsAgent, Namespace: kube.Namespace, Labels: agentLabels}}
	client := fake.NewClientset(left, payload, other, account)
	if err := RemoveAgents(context.Background(), &Context{Client: client}); err != nil {
		t.Fatal(err)
	}
	pods, _ := client.CoreV1().Pods(kube.Namespace).List(context.Background(), metav1.ListOptions{})
	cms, _ := client.CoreV1().ConfigMaps(kube.Namespace).List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 1 || pods.Items[0].Name != other.Name || len(cms.Items) != 0 {
		t.Errorf("left %d pods, %d payloads", len(pods.Items), len(cms.Items))
	}
	if _, err := client.CoreV1().ServiceAccounts(kube.Namespace).Get(context.Background(), credentialsAgent, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the credentials agent's account is left (%v)", err)
	}
}

func TestAgentImagesArePinnedToTheDigestANodeRan(t *testing.T) {
	c := &Context{}
	ran := func(imageID string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{ImageID: imageID}}}}
	}
	const busybox = "docker.io/library/busybox:1.36"
	c.learnDigest(busybox, ran("sha256:0a1b")) // loaded, never pulled: no repository digest
	if got := c.pinned(busybox); got != busybox {
		t.Fatalf("pinned to %s without a repository digest", got)
	}
	c.learnDigest(busybox, ran("docker.io/library/other@sha256:9999"))
	if got := c.pinned(busybox); got != busybox {
		t.Fatalf("pinned to another repository's digest: %s", got)
	}
	c.learnDigest(busybox, ran("docker.io/library/busybox@sha256:73aa"))
	if got := c.pinned(busybox); got != busybox+"@sha256:73aa" {
		t.Fatalf("pinned = %s", got)
	}
	if got := c.pinned("registry.example:5000/tools"); got != "registry.example:5000/tools" {
		t.Fatalf("an image never run was changed: %s", got)
	}
}
