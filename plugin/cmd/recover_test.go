package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad flags, and a host that cannot be recovered, are refused in one
// sentence before anything is read or written.
func TestRecoverRefusesBeforeItChangesAnything(t *testing.T) {
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: x}}]
current-context: c
`), 0o600)
	for args, want := range map[string]string{
		"--etcd-endpoint http://127.0.0.1:2379":                          `--etcd-endpoint "http://127.0.0.1:2379" is not an https:// URL`,
		"--etcd-prefix registry":                                         `--etcd-prefix "registry" must start with /`,
		"--timeout 0s":                                                   "--timeout must be positive",
		"--pod-manifest-path " + manifests:                               "is not a directory: is this a control-plane host?",
		"--pod-manifest-path " + dir + " --etcd-cafile " + dir + "/none": "cannot read etcd's CA",
	} {
		_, err := run(t, append([]string{"recover", "--kubeconfig", kubeconfig}, strings.Fields(args)...)...)
		if os.Geteuid() != 0 && !strings.HasPrefix(args, "--etcd") && !strings.HasPrefix(args, "--timeout") {
			want = "run it as root"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("recover %s: got %v, want %q", args, err, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused recover wrote %v", entries)
	}
}
