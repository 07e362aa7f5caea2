package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test binary re-runs itself as the real main, to see the exit code.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_AS_KUBECTL_SELFHOST") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBadFlagExitsOneWithOneLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "assets")
	cmd := exec.Command(os.Args[0], "render", "--asset-dir", dir, "--pod-cidr", "banana")
	cmd.Env = append(os.Environ(), "RUN_AS_KUBECTL_SELFHOST=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], `error: --pod-cidr "banana" is not a CIDR`) {
		t.Errorf("stderr is not one clear sentence: %q", stderr.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("a refused render wrote files")
	}
}
