package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// With ENVOY_TEST_MAIN set, the test binary runs main instead of tests, so
// the exit code and stderr of the real entry point can be checked.
func TestMain(m *testing.M) {
	if os.Getenv("ENVOY_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestExitsWithOneSentenceOnBadConfig(t *testing.T) {
	dir := t.TempDir()
	boot := filepath.Join(dir, "envoy.yaml")
	for name, content := range map[string]string{
		"envoy.yaml": "admin: {}\n", // no xDS paths: siblings are used
		"lds.yaml":   "resources: []",
		"cds.yaml":   "resources:\n- name: [\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "--log-level", "debug", "-c", boot, "--service-cluster", "x")
	cmd.Env = append(os.Environ(), "ENVOY_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v; output:\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := "envoy: cannot load config: " + filepath.Join(dir, "cds.yaml") + ": "
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Fatalf("want one line starting %q, got:\n%s", want, out)
	}
}

func TestConfigPath(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "/home/envoy/envoy.yaml"},
		{[]string{"-c", "/home/envoy/envoy.yaml"}, "/home/envoy/envoy.yaml"},
		{[]string{"--log-level", "info", "--config-path", "/a.yaml"}, "/a.yaml"},
		{[]string{"--config-path=/b.yaml", "--concurrency", "2"}, "/b.yaml"},
		{[]string{"-c=/c.yaml"}, "/c.yaml"},
	}
	for _, tt := range tests {
		if got := configPath(tt.args); got != tt.want {
			t.Errorf("configPath(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
