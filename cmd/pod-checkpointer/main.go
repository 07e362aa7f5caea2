// Command pod-checkpointer keeps static-pod checkpoints of self-hosted
// control-plane pods on each node; see package internal/checkpointer and the contract in plugin/checkpoint.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointer"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/nodecreds"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == nodecreds.Command {
		// The same image runs bootstrap's one-shot credentials agent.
		log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
		if err := nodecreds.Main(os.Args[2:], log); err != nil {
			log.Error(err.Error())
			os.Exit(1)
		}
		return
	}
	c := checkpointer.Config{
		Namespace:    os.Getenv("POD_NAMESPACE"),
		Node:         os.Getenv("NODE_NAME"),
		PodName:      os.Getenv("POD_NAME"),
		CheckpointOf: os.Getenv("CHECKPOINT_OF"),
		Grace:        checkpoint.DefaultGrace,
	}
	fs := flag.NewFlagSet("pod-checkpointer", flag.ExitOnError)
	fs.StringVar(&c.DaemonSet, "daemonset", "pod-checkpointer", "name of this checkpointer's DaemonSet; when it is deleted every checkpoint is removed")
	fs.StringVar(&c.Disk.ManifestDir, "manifest-dir", "/etc/kubernetes/manifests", "the kubelet's static pod directory, where active checkpoints go")
	fs.StringVar(&c.Disk.InactiveDir, "inactive-dir", "/etc/kubernetes/inactive-manifests", "directory of all checkpoints")
	fs.StringVar(&c.Disk.SecretDir, "secret-dir", "/etc/kubernetes/checkpoint-secrets", "directory of the secret and configMap copies")
	fs.StringVar(&c.CRIEndpoint, "container-runtime-endpoint", "unix:///run/containerd/containerd.sock", "CRI v1 endpoint")
	fs.StringVar(&c.LockFile, "lock-file", "/etc/kubernetes/pod-checkpointer.lock", "lock shared with the checkpointer's own checkpoint")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:10266", "address of /healthz and /metrics (loopback: nothing off the node needs them)")
	fs.StringVar(&c.Server, "server", "", "API server URL (default: the server of --kubelet-kubeconfig)")
	fs.StringVar(&c.KubeletKubeconfig, "kubelet-kubeconfig", "/etc/kubernetes/kubelet.conf", "kubeconfig to take the API server URL from")
	fs.StringVar(&c.TokenFile, "token-file", "/var/run/secrets/pod-checkpointer/token", "service account token, re-read on every request")
	fs.StringVar(&c.CAFile, "ca-file", "/var/run/secrets/pod-checkpointer/ca.crt", "CA bundle of the API server")
	fs.DurationVar(&c.Interval, "interval", checkpointer.DefaultInterval, "time between reconciles")
	fs.DurationVar(&c.BusyInterval, "busy-interval", checkpointer.DefaultBusyInterval, "time between reconciles while a checkpoint waits to activate or to hand over")
	fs.DurationVar(&c.Grace.Activate, "activate-after", c.Grace.Activate, "how long a parent must be down here before its checkpoint starts")
	fs.DurationVar(&c.Grace.HandOver, "hand-over-after", c.Grace.HandOver, "how long a returning parent must be Ready before its checkpoint stops")
	fs.DurationVar(&c.Grace.Remove, "remove-after", c.Grace.Remove, "how long a parent must be gone from the API before its checkpoint is removed")
	fs.DurationVar(&c.MinStable, "min-stable", checkpointer.DefaultMinStable, "how long containers must have run for a pod to count as running")
	fs.DurationVar(&c.RefreshEvery, "refresh-every", checkpointer.DefaultRefreshEvery, "how often volume copies are re-read from the API")
	fs.DurationVar(&c.TokenLifetime, "checkpoint-token-lifetime", checkpointer.DefaultTokenLifetime, "life of the service-account token a checkpoint keeps (renewed at half-life)")
	fs.DurationVar(&c.HeartbeatEvery, "heartbeat-every", checkpointer.DefaultHeartbeatEvery, "how often an unchanged status is published again")
	verbose := fs.Bool("debug", false, "log at debug level")
	fs.Parse(os.Args[1:])

	if os.Getenv("GOGC") == "" {
		// The heap is a few megabytes of short-lived API objects: collecting
		// more often keeps the idle footprint small at a negligible CPU cost.
		debug.SetGCPercent(50)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := checkpointer.Run(ctx, c, log); err != nil {
		fmt.Fprintln(os.Stderr, "pod-checkpointer:", err)
		os.Exit(1)
	}
}
