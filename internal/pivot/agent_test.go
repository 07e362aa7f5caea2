package pivot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runScript runs an agent script with /etc/kubernetes and /payload moved under root.
func runScript(t *testing.T, root, script string) {
	t.Helper()
	script = strings.ReplaceAll(script, "/etc/kubernetes", filepath.Join(root, "etc/kubernetes"))
	script = strings.ReplaceAll(script, "/payload", filepath.Join(root, "payload"))
	out, err := exec.Command("sh", "-euc", script).CombinedOutput()
	if err != nil {
		t.Fatalf("script failed: %v\n%s", err, out)
	}
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
		runScript(t, root, replaceStaticScript("kube-apiserver.yaml"))
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

func TestAgentNamesAreStableAndValid(t *testing.T) {
	a := agentJob{Node: "selfhost-control-plane3", Purpose: "remove-kube-controller-manager"}
	if a.name() != a.name() || len(a.name()) > 63 {
		t.Errorf("name %q", a.name())
	}
	b := agentJob{Node: "selfhost-control-plane2", Purpose: a.Purpose}
	if a.name() == b.name() {
		t.Error("two nodes' agents share a name")
	}
	p := agentPod(a.name(), nil, a, "busybox")
	if p.Spec.NodeName != a.Node || !*p.Spec.Containers[0].SecurityContext.Privileged {
		t.Error("agent not pinned to its node or not privileged")
	}
}
