package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// errNotYet says plainly that a command does nothing yet; it never fakes success.
func errNotYet(command string) error {
	return fmt.Errorf("kubectl selfhost %s is not implemented yet; nothing was checked or changed", command)
}

// NewBootstrapCommand returns `kubectl selfhost bootstrap` (not yet implemented).
func NewBootstrapCommand(_ genericiooptions.IOStreams, _ *genericclioptions.ConfigFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap",
		Short: "Pivot a live cluster's static-pod control plane to self-hosted workloads (not implemented yet)",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return errNotYet("bootstrap") },
	}
}
