// Package cmd holds the kubectl selfhost commands. Each follows kubectl's
// plugin pattern: an Options struct, then Complete, Validate and Run.
package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// NewRootCommand returns `kubectl selfhost` and its subcommands.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	configFlags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl-selfhost",
		Short: "Turn a kubeadm-style cluster into a self-hosted control plane, and prove it",
		Long: `kubectl selfhost runs the Kubernetes control plane as ordinary workloads:
the API server as a DaemonSet, the controller manager and scheduler as
Deployments with PodDisruptionBudgets, and pod-checkpointer to bring the
API server back when every copy of it is gone.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl selfhost"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	configFlags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		NewRenderCommand(streams),
		NewBootstrapCommand(streams, configFlags),
		NewRevertCommand(streams, configFlags),
		NewUpgradeCommand(streams, configFlags),
		NewRecoverCommand(streams, configFlags),
		NewStartCommand(streams),
		NewVerifyCommand(streams, configFlags),
		NewVersionCommand(streams, configFlags),
	)
	return root
}

// defaultRequestTimeout bounds every request unless --request-timeout says
// otherwise: an API server that accepts a connection and never answers must
// not hang a command. The waits retry, so one slow answer costs a poll.
const defaultRequestTimeout = 30 * time.Second

// clientsFor loads kubectl's connection flags into a REST config and a clientset.
// clientQPS is the plugin's request rate limit.
const clientQPS = 50

func clientsFor(configFlags *genericclioptions.ConfigFlags) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := configFlags.ToRESTConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot load a kubeconfig: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultRequestTimeout
	}
	// Steps that run on every node at once poll side by side; client-go's
	// default of 5 requests a second would throttle them, and say so on stderr.
	cfg.QPS, cfg.Burst = clientQPS, 2*clientQPS
	client, err := kubernetes.NewForConfig(cfg)
	return cfg, client, err
}

// applyClientsFor is clientsFor with a dynamic client for server-side
// apply; a timeout other than 0 replaces the requests' timeout.
func applyClientsFor(configFlags *genericclioptions.ConfigFlags, timeout time.Duration) (kubernetes.Interface, dynamic.Interface, error) {
	cfg, client, err := clientsFor(configFlags)
	if err != nil {
		return nil, nil, err
	}
	if timeout != 0 {
		cfg.Timeout = timeout
		if client, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, nil, err
		}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	return client, dyn, err
}
