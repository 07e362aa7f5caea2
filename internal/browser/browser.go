// Package browser drives a headless Chromium to prove a page renders: it
// reads back the DOM the browser built and takes a screenshot.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// timeout bounds one run of the browser.
const timeout = time.Minute

// Install is what a Debian host runs to get the browser.
const Install = "apt-get install -y chromium"

// Chromium is a headless Chromium.
type Chromium struct{ Path string }

// Find returns the Chromium on PATH, or an error naming how to install it.
func Find() (*Chromium, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return &Chromium{Path: p}, nil
		}
	}
	return nil, fmt.Errorf("no headless Chromium on PATH: %s", Install)
}

// DOM returns the document the browser built from the file, scripts run.
func (c *Chromium) DOM(ctx context.Context, file string) (string, error) {
	return c.run(ctx, file, "--dump-dom")
}

// Screenshot renders the file in a window of width x height and writes a PNG.
func (c *Chromium) Screenshot(ctx context.Context, file, png string, width, height int) error {
	abs, err := filepath.Abs(png)
	if err != nil {
		return err
	}
	if _, err := c.run(ctx, file, "--screenshot="+abs, fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars"); err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("chromium wrote no screenshot of %s: %w", file, err)
	}
	return nil
}

func (c *Chromium) run(ctx context.Context, file string, args ...string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	profile, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	// No sandbox: CI runs as root, where Chromium's sandbox refuses to start.
	// The page is our own file and the browser is offline.
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + profile}
	cmd := exec.CommandContext(ctx, c.Path, append(append(base, args...), "file://"+abs)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", fmt.Errorf("chromium did not finish with %s within %s", file, timeout)
		}
		return "", fmt.Errorf("chromium failed on %s: %w: %s", file, err, lastLine(stderr.String()))
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
