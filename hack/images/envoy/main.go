// Command envoy stands in for Envoy in kind's load-balancer container
// (docker.io/envoyproxy/envoy:v1.36.2), which no registry serves here.
//
// kind runs `envoy -c /home/envoy/envoy.yaml`, then replaces lds.yaml and
// cds.yaml with mv. This program serves what those files describe: a TCP
// proxy from the listener port to the API servers, round robin over the
// endpoints whose HTTPS /healthz passes. It polls the files for changes,
// since inotify on a path loses track when mv swaps the inode.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const defaultBootstrap = "/home/envoy/envoy.yaml"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], time.Second, log); err != nil {
		fmt.Fprintf(os.Stderr, "envoy: %v\n", err)
		os.Exit(1)
	}
}

// run loads the config named by args, serves it, and reloads it every poll
// until ctx ends. It fails only if the first load fails.
func run(ctx context.Context, args []string, poll time.Duration, log *slog.Logger) error {
	bootstrap := configPath(args)
	paths, err := LoadBootstrap(bootstrap)
	if err != nil {
		return fmt.Errorf("cannot read bootstrap config: %w", err)
	}
	cfg, lds, cds, err := Load(paths)
	if err != nil {
		return fmt.Errorf("cannot load config: %w", err)
	}
	log.Info("starting", "bootstrap", bootstrap, "lds", paths.LDS, "cds", paths.CDS)
	lb := NewBalancer(log)
	defer lb.Close()
	applyErr := lb.Apply(cfg)
	if applyErr != nil {
		log.Error("config partly applied; will retry", "err", applyErr)
	}
	watch(ctx, lb, paths, poll, lds, cds, applyErr != nil, log)
	log.Info("stopping")
	return nil
}

// watch re-reads both files every poll and applies them when they change.
// A file that does not parse is reported once and the running config kept,
// as envoy rejects a bad xDS update.
func watch(ctx context.Context, lb *Balancer, p Paths, poll time.Duration, lds, cds []byte, retry bool, log *slog.Logger) {
	t := time.NewTicker(poll)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		newLDS, errL := os.ReadFile(p.LDS)
		newCDS, errC := os.ReadFile(p.CDS)
		if err := firstErr(errL, errC); err != nil {
			if err.Error() != lastErr {
				log.Error("cannot read config; keeping the running one", "err", err)
				lastErr = err.Error()
			}
			continue
		}
		changed := !bytes.Equal(newLDS, lds) || !bytes.Equal(newCDS, cds)
		if !changed && !retry {
			continue
		}
		lds, cds = newLDS, newCDS
		cfg, err := parse(p, lds, cds)
		if err != nil {
			// lds/cds now hold the bad bytes, so this is reported once.
			log.Error("config rejected; keeping the running one", "err", err)
			lastErr, retry = err.Error(), false
			continue
		}
		if changed {
			log.Info("config changed; applying", "listeners", len(cfg.Listeners), "clusters", len(cfg.Clusters))
		}
		err = lb.Apply(cfg)
		retry = err != nil
		switch {
		case retry && err.Error() != lastErr:
			log.Error("config partly applied; will retry", "err", err)
			lastErr = err.Error()
		case !retry:
			lastErr = ""
		}
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// configPath finds envoy's -c/--config-path and ignores every other flag,
// so kind (or a user) may pass envoy flags this program has no use for.
func configPath(args []string) string {
	for i, a := range args {
		for _, name := range []string{"-c", "--config-path"} {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
	}
	return defaultBootstrap
}
