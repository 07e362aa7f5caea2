package start

import (
	"context"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
)

var members = []string{"cp1=10.0.0.11", "cp2=10.0.0.12", "cp3=10.0.0.13"}

// renderAssets writes a fresh asset directory, as `kubectl selfhost render` does.
func renderAssets(t *testing.T, mutate func(*render.Input)) string {
	t.Helper()
	in := render.DefaultInput()
	in.APIServers = []string{"https://lb.example.test:6443"}
	in.EtcdMembers = members
	if mutate != nil {
		mutate(&in)
	}
	c, err := in.Parse()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := render.Assets(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "assets")
	if err := render.Write(dir, assets, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadAssetsOrdersTheManifestsAndFindsTheMembers(t *testing.T) {
	a, err := LoadAssets(renderAssets(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.ControlPlane, ","); got != "cp1,cp2,cp3" {
		t.Errorf("control-plane nodes %s", got)
	}
	if got := strings.Join(a.EtcdServers, ","); got != "https://10.0.0.11:2379,https://10.0.0.12:2379,https://10.0.0.13:2379" {
		t.Errorf("etcd servers %s", got)
	}
	// Every kind lands in its wave, and a workload never before what it uses.
	seen := map[string]int{}
	for i, w := range a.Waves {
		for _, o := range w {
			seen[o.GetKind()] = i
		}
	}
	for _, order := range [][2]string{{"Namespace", "ServiceAccount"}, {"ClusterRoleBinding", "Secret"}, {"Secret", "DaemonSet"}, {"ConfigMap", "Deployment"}} {
		if seen[order[0]] >= seen[order[1]] {
			t.Errorf("%s (wave %d) is not applied before %s (wave %d)", order[0], seen[order[0]], order[1], seen[order[1]])
		}
	}
	if a.Secrets["kubeconfig"] == nil || a.Secrets["ca.key"] == nil || len(a.BootstrapPods) != 3 {
		t.Errorf("secrets %d, bootstrap pods %d", len(a.Secrets), len(a.BootstrapPods))
	}
}

func TestLoadAssetsNamesWhatIsMissing(t *testing.T) {
	dir := renderAssets(t, nil)
	if err := os.Remove(filepath.Join(dir, render.APIServerKey)); err != nil {
		t.Fatal(err)
	}
	_, err := LoadAssets(dir)
	if err == nil || !strings.Contains(err.Error(), render.APIServerKey) {
		t.Fatalf("got %v, want an error naming %s", err, render.APIServerKey)
	}
}

func TestCertificateChecks(t *testing.T) {
	a, err := LoadAssets(renderAssets(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.checkCertificates([]string{"cp9", "10.0.0.12"}); err != nil {
		t.Errorf("a member's address: %v", err)
	}
	if err := a.checkCertificates([]string{"other", "192.0.2.1"}); err == nil || !strings.Contains(err.Error(), "names none of this host") {
		t.Errorf("another host: %v", err)
	}
	// A certificate from another render does not chain to this CA.
	other, err := LoadAssets(renderAssets(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{render.APIServerCert, render.APIServerKey} {
		a.Secrets[filepath.Base(f)] = other.asset(f)
	}
	if err := a.checkCertificates([]string{"10.0.0.12"}); err == nil || !strings.Contains(err.Error(), "is not signed by") {
		t.Errorf("a foreign certificate: %v", err)
	}
}

// start's own credential is a short-lived system:masters certificate of the
// cluster CA.
func TestSuperAdminIsShortLived(t *testing.T) {
	a, err := LoadAssets(renderAssets(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.superAdmin()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCert(cfg.CertData)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.ParseCert(a.asset(render.CACert))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Error(err)
	}
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:masters" || time.Until(cert.NotAfter) > superAdminValidity {
		t.Errorf("O=%v, valid until %s", cert.Subject.Organization, cert.NotAfter)
	}
	if cfg.Host != "https://lb.example.test:6443" || len(cfg.BearerToken) > 0 {
		t.Errorf("host %s", cfg.Host)
	}
}

func testContext(t *testing.T, objs ...corev1.Node) *Context {
	t.Helper()
	a, err := LoadAssets(renderAssets(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	for i := range objs {
		if _, err := client.CoreV1().Nodes().Create(context.Background(), &objs[i], metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	o := Options{AssetDir: a.Dir, PodManifestDir: filepath.Join(dir, "manifests"), SecretsDir: filepath.Join(dir, "bootstrap-secrets"),
		NodeName: "cp1", StepTimeout: 5 * time.Second}
	if err := os.MkdirAll(o.PodManifestDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Context{Options: o, Assets: a, Client: client, Status: progress.NewStatus(io.Discard, false)}
}

// The file steps write owner-only files, are done once the files hold the
// assets, and not when one differs.
func TestTheBootstrapFilesAreOwnerOnlyAndChecked(t *testing.T) {
	ctx := context.Background()
	c := testContext(t)
	for _, a := range []Action{&copySecrets{}, &writeBootstrapPods{}} {
		if done, _ := a.Done(ctx, c); done {
			t.Fatalf("%s: done before it ran", a.Name())
		}
		if err := a.Execute(ctx, c); err != nil {
			t.Fatal(err)
		}
		if done, _ := a.Done(ctx, c); !done {
			t.Fatalf("%s: not done after it ran", a.Name())
		}
	}
	if fi, err := os.Stat(c.Options.SecretsDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("secrets directory: %v %v", fi.Mode(), err)
	}
	for _, dir := range []string{c.Options.SecretsDir, c.Options.PodManifestDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s/%s: mode %o", dir, e.Name(), fi.Mode().Perm())
			}
		}
	}
	if err := os.WriteFile(filepath.Join(c.Options.SecretsDir, "ca.crt"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if done, _ := (&copySecrets{}).Done(ctx, c); done {
		t.Error("done with a changed credential")
	}
	// Removing the bootstrap control plane is not done while its pods are on disk.
	if done, _ := (&removeBootstrap{}).Done(ctx, c); done {
		t.Error("removeBootstrap done with the bootstrap pods on disk")
	}
}

// Control-plane nodes are labelled as they register; a worker is not.
func TestLabelsTheControlPlaneNodesAsTheyRegister(t *testing.T) {
	ctx := context.Background()
	node := func(name string) corev1.Node { return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	c := testContext(t, node("cp1"), node("cp2"), node("w1"))
	a := &labelControlPlane{}
	if done, _ := a.Done(ctx, c); done {
		t.Fatal("done before any label")
	}
	// cp3 registers while the step waits.
	go func() {
		time.Sleep(1500 * time.Millisecond)
		cp3 := node("cp3")
		c.Client.CoreV1().Nodes().Create(ctx, &cp3, metav1.CreateOptions{})
	}()
	if err := a.Execute(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"cp1", "cp2", "cp3", "w1"} {
		got, _ := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if _, ok := got.Labels[kube.ControlPlaneLabel]; ok != (n != "w1") {
			t.Errorf("%s: labels %v", n, got.Labels)
		}
	}
	if done, _ := a.Done(ctx, c); !done {
		t.Error("not done once every control-plane node is labelled")
	}
}
