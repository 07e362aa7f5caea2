package cmd

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := NewRootCommand(streams)
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.Execute()
	return out.String(), err
}

func writeCA(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	ca, err := pki.NewCA(pki.ECDSAP256, name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.EncodeKey(ca.Key)
	c, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(c, pki.EncodeCert(ca.Cert), 0o644)
	os.WriteFile(k, key, 0o600)
	return c, k
}

// Each bad input gets its own sentence, and nothing is written.
func TestRenderRejectsBadInputAndWritesNothing(t *testing.T) {
	tmp := t.TempDir()
	aCert, _ := writeCA(t, tmp, "a")
	_, bKey := writeCA(t, tmp, "b")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad pod CIDR", []string{"--pod-cidr", "10.244.0.0/33"}, `--pod-cidr "10.244.0.0/33" is not a CIDR`},
		{"host bits", []string{"--service-cidr", "10.96.0.1/12"}, "has host bits set; did you mean 10.96.0.0/12?"},
		{"overlap", []string{"--pod-cidr", "10.96.0.0/16"}, "--service-cidr 10.96.0.0/12 overlaps --pod-cidr 10.96.0.0/16"},
		{"version", []string{"--kubernetes-version", "1.37"}, `--kubernetes-version "1.37" is not a version`},
		{"old version", []string{"--kubernetes-version", "v1.20.0"}, "older than the oldest supported"},
		{"CA/key mismatch", []string{"--ca-cert", aCert, "--ca-key", bKey}, "the key does not match the certificate"},
		{"CA without key", []string{"--ca-cert", aCert}, "--ca-cert and --ca-key must be given together"},
		{"key algorithm", []string{"--key-algorithm", "ed448"}, `unknown key algorithm "ed448"`},
		{"api server", []string{"--api-servers", "http://10.0.0.1:6443"}, "is not an https://host:port URL"},
		{"alt name", []string{"--api-server-alt-names", "IP=not-an-ip"}, "is not an IP address"},
		{"domain", []string{"--cluster-domain", "Not_A_Domain"}, "is not a valid DNS domain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, "assets-"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err := run(t, append([]string{"render", "--asset-dir", dir}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one sentence: %q", err)
			}
			if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
				t.Errorf("a refused render created %s", dir)
			}
		})
	}
	if _, err := run(t, "render"); err == nil || !strings.Contains(err.Error(), "--asset-dir is required") {
		t.Errorf("no --asset-dir: got %v", err)
	}
}

func TestRenderRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644)
	if _, err := run(t, "render", "--asset-dir", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("want a refusal naming --force, got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("refused render wrote %d entries", len(entries)-1)
	}
	out, err := run(t, "render", "--asset-dir", dir, "--force", "--key-algorithm", "rsa-2048")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Rendered ") || !strings.Contains(out, "rsa-2048") {
		t.Errorf("unexpected output %q", out)
	}
}

func TestHelpSaysKubectlSelfhost(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "kubectl selfhost [command]") || strings.Contains(out, "kubectl-selfhost [command]") {
		t.Errorf("help does not use kubectl's plugin name:\n%s", out)
	}
	for _, c := range []string{"render", "bootstrap", "verify", "version", "completion"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("help does not list %s", c)
		}
	}
	for _, f := range []string{"--kubeconfig", "--context"} {
		if !strings.Contains(out, f) {
			t.Errorf("help lacks kubectl's %s", f)
		}
	}
}

func TestVerifyUnreachableClusterIsOneSentence(t *testing.T) {
	kubeconfig := unreachableKubeconfig(t)
	_, err := run(t, "verify", "--kubeconfig", kubeconfig)
	if err == nil || !strings.HasPrefix(err.Error(), "cannot verify the cluster: cannot list nodes") {
		t.Errorf("want a clear failure, got %v", err)
	}
	if _, err := run(t, "verify", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("-o yaml: got %v", err)
	}
}

func TestVersionJSONWithoutCluster(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	out, err := run(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"clientVersion"`) || !strings.Contains(out, `"serverError": "no cluster configured`) {
		t.Errorf("unexpected output:\n%s", out)
	}
	if _, err := run(t, "version", "-o", "yaml"); err == nil {
		t.Error("-o yaml: want an error")
	}
}

func TestVersionReportsServerVersion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(t.TempDir(), "config")
	os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, srv.URL)), 0o600)
	out, err := run(t, "version", "--kubeconfig", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Server Version: v1.37.2") {
		t.Errorf("unexpected output:\n%s", out)
	}
}

// Every request has a timeout: kubectl's --request-timeout when given, the
// default otherwise, so a server that never answers cannot hang a command.
func TestEveryRequestHasATimeout(t *testing.T) {
	kubeconfig := unreachableKubeconfig(t)
	for _, tc := range []struct {
		flag string
		want time.Duration
	}{{"", defaultRequestTimeout}, {"5s", 5 * time.Second}} {
		flags := genericclioptions.NewConfigFlags(false)
		flags.KubeConfig = &kubeconfig
		flags.Timeout = &tc.flag
		cfg, _, err := clientsFor(flags)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Timeout != tc.want {
			t.Errorf("--request-timeout %q: requests time out after %s, want %s", tc.flag, cfg.Timeout, tc.want)
		}
	}
}

// bootstrap refuses bad flags before it reads a kubeconfig, let alone changes
// a cluster: none of these runs has a cluster to talk to.
func TestBootstrapRefusesBadFlagsFirst(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--apps-namespace", "Not_A_Namespace"}, `--apps-namespace "Not_A_Namespace" is not a valid namespace name`},
		{[]string{"--checkpointer-image", "pod checkpointer"}, `--checkpointer-image "pod checkpointer" is not an image reference`},
		{[]string{"--tools-image", "Busybox:1.36"}, `--tools-image "Busybox:1.36" is not an image reference`},
		{[]string{"--certs", "disk"}, "--certs must be"},
		{[]string{"--timeout", "0s"}, "--timeout must be positive"},
	} {
		_, err := run(t, append([]string{"bootstrap", "--kubeconfig", "/nonexistent"}, tc.args...)...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// unreachableKubeconfig names a server on port 1 of loopback: nothing
// listens there, so a dial fails at once.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "config")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}
