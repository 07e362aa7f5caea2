package checkpointer

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/atomicfile"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func TestWriteVolumePermissions(t *testing.T) {
	d := testDisk(t)
	dir := filepath.Join(d.SecretDir, testNS, "pod", "vol")
	files := map[string]checkpoint.File{
		"tls.key":           {Data: []byte("key"), Mode: 0o600},
		"audit/policy.yaml": {Data: []byte("policy"), Mode: 0o400},
	}
	if changed, err := d.WriteVolume(dir, files, 0, 0); err != nil || !changed {
		t.Fatalf("WriteVolume = %t, %v", changed, err)
	}
	for _, p := range []string{d.SecretDir, filepath.Join(d.SecretDir, testNS), filepath.Join(d.SecretDir, testNS, "pod"), dir, filepath.Join(dir, "audit")} {
		if got := perm(t, p); got != 0o700 {
			t.Errorf("%s has mode %o, want 0700", p, got)
		}
	}
	if got := perm(t, filepath.Join(dir, "tls.key")); got != 0o600 {
		t.Errorf("tls.key has mode %o, want 0600", got)
	}
	if got := perm(t, filepath.Join(dir, "audit", "policy.yaml")); got != 0o400 {
		t.Errorf("policy.yaml has mode %o, want 0400", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "audit", "policy.yaml")); string(b) != "policy" {
		t.Errorf("policy.yaml = %q", b)
	}
}

func TestWriteVolumeOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	d := testDisk(t)
	dir := filepath.Join(d.SecretDir, testNS, "pod", "vol")
	if _, err := d.WriteVolume(dir, map[string]checkpoint.File{"k": {Data: []byte("v"), Mode: 0o600}}, 1000, 2000); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "k")} {
		info, _ := os.Stat(p)
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != 1000 || st.Gid != 2000 {
			t.Errorf("%s belongs to %d:%d, want 1000:2000", p, st.Uid, st.Gid)
		}
	}
}

func TestWriteVolumeReplacesTheWholeSet(t *testing.T) {
	d := testDisk(t)
	dir := filepath.Join(d.SecretDir, testNS, "pod", "vol")
	if _, err := d.WriteVolume(dir, map[string]checkpoint.File{"old": {Data: []byte("1"), Mode: 0o600}, "kept": {Data: []byte("1"), Mode: 0o600}}, 0, 0); err != nil {
		t.Fatal(err)
	}
	if changed, _ := d.WriteVolume(dir, map[string]checkpoint.File{"old": {Data: []byte("1"), Mode: 0o600}, "kept": {Data: []byte("1"), Mode: 0o600}}, 0, 0); changed {
		t.Error("an identical write changed the volume")
	}
	if _, err := d.WriteVolume(dir, map[string]checkpoint.File{"kept": {Data: []byte("2"), Mode: 0o600}, "new": {Data: []byte("2"), Mode: 0o600}}, 0, 0); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(dir, "old")) {
		t.Error("a key that left the secret is still there")
	}
	for _, k := range []string{"kept", "new"} {
		if b, _ := os.ReadFile(filepath.Join(dir, k)); string(b) != "2" {
			t.Errorf("%s = %q, want 2", k, b)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 4 { // ..data, one version, kept, new
		t.Errorf("volume holds %v, want ..data, one version and two names", names)
	}
}

func TestManifestPermissionsAndList(t *testing.T) {
	d := testDisk(t)
	cp, _, err := checkpoint.Sanitize(parentPod(parentName, true), d.SecretDir)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := d.WriteInactive(cp); err != nil || !changed {
		t.Fatalf("WriteInactive = %t, %v", changed, err)
	}
	if changed, _ := d.WriteInactive(cp); changed {
		t.Error("an identical write reported a change")
	}
	if err := d.Activate(testNS, parentName); err != nil {
		t.Fatal(err)
	}
	if got := perm(t, d.InactiveDir); got != 0o700 {
		t.Errorf("inactive dir has mode %o, want 0700", got)
	}
	for _, dir := range []string{d.InactiveDir, d.ManifestDir} {
		if got := perm(t, filepath.Join(dir, manifestName(testNS, parentName))); got != 0o600 {
			t.Errorf("manifest in %s has mode %o, want 0600", dir, got)
		}
	}
	// kubeadm's own static pods and stray files are not checkpoints.
	os.WriteFile(filepath.Join(d.ManifestDir, "etcd.yaml"), []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n"), 0o600)
	os.WriteFile(filepath.Join(d.ManifestDir, "junk.json"), []byte("{not json"), 0o600)
	got, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	od := got[Key(testNS, parentName)]
	if len(got) != 1 || od == nil || !od.Active || !od.Inactive || !reflect.DeepEqual(od.Pod, cp) {
		t.Fatalf("List = %+v, want the one checkpoint, active and inactive, as written", got)
	}
	// A changed checkpoint refreshes its active copy too.
	cp.Spec.Containers[0].Image = "registry.k8s.io/kube-apiserver:v1.37.3"
	d.WriteInactive(cp)
	active, _ := readPod(filepath.Join(d.ManifestDir, manifestName(testNS, parentName)))
	if active.Spec.Containers[0].Image != cp.Spec.Containers[0].Image {
		t.Error("the active copy was not refreshed")
	}
	if err := d.Deactivate(testNS, parentName); err != nil || exists(filepath.Join(d.ManifestDir, manifestName(testNS, parentName))) {
		t.Fatalf("Deactivate: %v", err)
	}
	if err := d.Deactivate(testNS, parentName); err != nil {
		t.Fatalf("a second Deactivate failed: %v", err)
	}
}

// A checkpoint file whose names would lead outside the checkpointer's
// directories (a hand-edited or hostile file) is not listed, so nothing is
// ever joined to them, let alone removed.
func TestListSkipsNamesThatLeaveTheDirectories(t *testing.T) {
	d := testDisk(t)
	for _, meta := range []string{
		`{"name": "x", "namespace": "../..", "annotations": {"checkpointer.selfhost.dev/checkpoint-of": "etc"}}`,
		`{"name": "x", "namespace": "kube-system", "annotations": {"checkpointer.selfhost.dev/checkpoint-of": "../../../etc"}}`,
	} {
		pod := []byte(`{"apiVersion": "v1", "kind": "Pod", "metadata": ` + meta + `}`)
		if err := os.WriteFile(filepath.Join(d.ManifestDir, "hostile.json"), pod, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := d.List(); err != nil || len(got) != 0 {
			t.Errorf("List = %v, %v; want nothing for %s", got, err, meta)
		}
	}
	if err := os.MkdirAll(filepath.Join(d.SecretDir, "Not_A_Namespace", "pod"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.List(); len(got) != 0 {
		t.Errorf("List = %v; want nothing for a copy under an invalid namespace", got)
	}
}

// crashHelper runs in a child process: it starts a write and blocks at the
// worst moment, after the temporary data is complete and before the rename.
func TestCrashHelper(t *testing.T) {
	mode := os.Getenv("CHECKPOINT_CRASH_MODE")
	if mode == "" {
		t.Skip("runs only as the child of a crash test")
	}
	root := os.Getenv("CHECKPOINT_CRASH_DIR")
	atomicfile.AfterTempWrite = func(string) {
		os.WriteFile(filepath.Join(root, "ready"), nil, 0o600)
		time.Sleep(time.Minute) // killed here
	}
	d := Disk{ManifestDir: filepath.Join(root, "manifests"), InactiveDir: filepath.Join(root, "inactive"), SecretDir: filepath.Join(root, "secrets")}
	switch mode {
	case "manifest":
		cp, _, _ := checkpoint.Sanitize(parentPod(parentName, true), d.SecretDir)
		cp.Spec.Containers[0].Image = "new-image"
		d.WriteInactive(cp)
	case "volume":
		d.WriteVolume(filepath.Join(d.SecretDir, testNS, parentName, "extra"), map[string]checkpoint.File{"key.pem": {Data: []byte("new"), Mode: 0o600}, "added": {Data: []byte("new"), Mode: 0o600}}, 0, 0)
	}
	t.Fatal("the write finished although it should have been killed")
}

// killMidWrite runs TestCrashHelper in a child and SIGKILLs it between write and rename.
func killMidWrite(t *testing.T, mode, root string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_CRASH_MODE="+mode, "CHECKPOINT_CRASH_DIR="+root)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := func(context.Context) (bool, error) { return exists(filepath.Join(root, "ready")), nil }
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, ready); err != nil {
		cmd.Process.Kill()
		t.Fatal("the child never reached the rename")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	os.Remove(filepath.Join(root, "ready"))
}

func visibleNames(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

func TestKillBetweenWriteAndRenameKeepsTheOldManifest(t *testing.T) {
	root := t.TempDir()
	d := Disk{ManifestDir: filepath.Join(root, "manifests"), InactiveDir: filepath.Join(root, "inactive"), SecretDir: filepath.Join(root, "secrets")}
	os.MkdirAll(d.ManifestDir, 0o755)
	old, _, _ := checkpoint.Sanitize(parentPod(parentName, true), d.SecretDir)
	d.WriteInactive(old)
	d.Activate(testNS, parentName)
	before, _ := os.ReadFile(filepath.Join(d.InactiveDir, manifestName(testNS, parentName)))

	killMidWrite(t, "manifest", root)

	after, err := os.ReadFile(filepath.Join(d.InactiveDir, manifestName(testNS, parentName)))
	if err != nil || string(after) != string(before) {
		t.Fatalf("the manifest changed under a killed writer: %v", err)
	}
	entries, _ := os.ReadDir(d.InactiveDir)
	if len(entries) != 2 {
		t.Fatalf("inactive dir holds %d entries, want the manifest and the killed writer's temporary file", len(entries))
	}
	// The kubelet ignores dot files, so it sees only whole manifests.
	if got := visibleNames(t, d.ManifestDir); !reflect.DeepEqual(got, []string{manifestName(testNS, parentName)}) {
		t.Fatalf("the kubelet would read %v", got)
	}
	n, err := d.CleanTemp()
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want the one temporary file removed", n, err)
	}
	if got := visibleNames(t, d.InactiveDir); len(got) != 1 {
		t.Fatalf("after cleaning: %v", got)
	}
	if all, _ := os.ReadDir(d.InactiveDir); len(all) != 1 {
		t.Fatalf("a temporary file survived the cleaning")
	}
	list, _ := d.List()
	if od := list[Key(testNS, parentName)]; od == nil || od.Pod.Spec.Containers[0].Image != old.Spec.Containers[0].Image {
		t.Fatal("the old checkpoint is not intact")
	}
}

func TestKillBetweenWriteAndRenameKeepsTheOldVolume(t *testing.T) {
	root := t.TempDir()
	d := Disk{ManifestDir: filepath.Join(root, "manifests"), InactiveDir: filepath.Join(root, "inactive"), SecretDir: filepath.Join(root, "secrets")}
	dir := filepath.Join(d.SecretDir, testNS, parentName, "extra")
	if _, err := d.WriteVolume(dir, map[string]checkpoint.File{"key.pem": {Data: []byte("old"), Mode: 0o600}}, 0, 0); err != nil {
		t.Fatal(err)
	}

	killMidWrite(t, "volume", root)

	if b, _ := os.ReadFile(filepath.Join(dir, "key.pem")); string(b) != "old" {
		t.Fatalf("key.pem = %q under a killed writer, want old", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "added")); err == nil {
		t.Fatal("a key of the unfinished version is readable")
	}
	n, err := d.CleanTemp()
	if err != nil || n == 0 {
		t.Fatalf("CleanTemp = %d, %v; want the unfinished version removed", n, err)
	}
	entries, _ := os.ReadDir(dir)
	versions := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), versionPrefix) {
			versions++
		}
	}
	if versions != 1 {
		t.Fatalf("%d versions after cleaning, want only the current one", versions)
	}
	// The next write completes normally.
	if _, err := d.WriteVolume(dir, map[string]checkpoint.File{"key.pem": {Data: []byte("new"), Mode: 0o600}}, 0, 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "key.pem")); string(b) != "new" {
		t.Fatalf("key.pem = %q, want new", b)
	}
}

func TestCleanTempLeavesCurrentFilesAlone(t *testing.T) {
	d := testDisk(t)
	dir := filepath.Join(d.SecretDir, testNS, "pod", "vol")
	d.WriteVolume(dir, map[string]checkpoint.File{"k": {Data: []byte("v"), Mode: 0o600}}, 0, 0)
	cp, _, _ := checkpoint.Sanitize(parentPod(parentName, true), d.SecretDir)
	d.WriteInactive(cp)
	os.WriteFile(filepath.Join(d.ManifestDir, ".tmp-x.json-123"), []byte("{"), 0o600)
	os.Mkdir(filepath.Join(dir, versionPrefix+"stale"), 0o700)
	os.Symlink("nowhere", filepath.Join(dir, dataLinkTemp))
	n, err := d.CleanTemp()
	if err != nil || n != 3 {
		t.Fatalf("CleanTemp = %d, %v; want 3 removed", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "k")); string(b) != "v" {
		t.Fatal("CleanTemp damaged the current version")
	}
	if n, _ := d.CleanTemp(); n != 0 {
		t.Fatalf("a second CleanTemp removed %d more", n)
	}
}

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod-checkpointer.lock")
	a, b := &Lock{Path: path, Clock: clock.RealClock{}}, &Lock{Path: path, Clock: clock.RealClock{}}
	if ok, err := a.TryLock(); !ok || err != nil {
		t.Fatalf("first TryLock = %t, %v", ok, err)
	}
	if ok, err := b.TryLock(); ok || err != nil {
		t.Fatalf("second TryLock = %t, %v; want the lock taken", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Acquire(ctx, 10*time.Millisecond); err == nil {
		t.Fatal("Acquire got a held lock")
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		a.Unlock()
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := b.Acquire(ctx2, 5*time.Millisecond); err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if got := perm(t, path); got != 0o600 {
		t.Errorf("lock file mode %o, want 0600", got)
	}
	b.Unlock()
}

// The lock also excludes another process, as between the DaemonSet pod and
// its static checkpoint.
func TestLockAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l := &Lock{Path: path}
	if ok, _ := l.TryLock(); !ok {
		t.Fatal("cannot take the lock")
	}
	defer l.Unlock()
	out, err := exec.Command("flock", "-n", path, "true").CombinedOutput()
	if _, missing := err.(*exec.Error); missing {
		t.Skip("flock(1) is not installed")
	}
	if err == nil {
		t.Fatalf("another process took the held lock: %s", out)
	}
}
