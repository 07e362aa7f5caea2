package cmd

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"

	pluginversion "github.com/kubectl-selfhost/kubectl-selfhost/internal/version"
)

// VersionOptions are the inputs of `kubectl selfhost version`.
type VersionOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags
	Output      string
	ClientOnly  bool
}

// VersionReport is what `version -o json` prints.
type VersionReport struct {
	Client      pluginversion.Info `json:"clientVersion"`
	Server      *version.Info      `json:"serverVersion,omitempty"`
	ServerError string             `json:"serverError,omitempty"`
}

// NewVersionCommand returns `kubectl selfhost version`.
func NewVersionCommand(streams genericiooptions.IOStreams, configFlags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &VersionOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version and, when a cluster answers, the server version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run()
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json")
	cmd.Flags().BoolVar(&o.ClientOnly, "client", false, "print the plugin version only, without contacting a cluster")
	return cmd
}

// Validate rejects unknown output formats.
func (o *VersionOptions) Validate() error {
	if o.Output != "" && o.Output != "json" {
		return fmt.Errorf("--output %q is not supported: use json", o.Output)
	}
	return nil
}

// Run prints the versions. An unreachable cluster is reported, not an error:
// the plugin version is still worth printing.
func (o *VersionOptions) Run() error {
	r := VersionReport{Client: pluginversion.Get()}
	if !o.ClientOnly {
		r.Server, r.ServerError = o.serverVersion()
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(o.Out, "Client Version: %s (%s, %s)\n", r.Client.Version, r.Client.GoVersion, r.Client.Platform)
	switch {
	case r.Server != nil:
		fmt.Fprintf(o.Out, "Server Version: %s\n", r.Server.GitVersion)
	case r.ServerError != "":
		fmt.Fprintf(o.Out, "Server Version: unavailable (%s)\n", r.ServerError)
	}
	return nil
}

func (o *VersionOptions) serverVersion() (*version.Info, string) {
	// Without a kubeconfig client-go would fall back to localhost:8080.
	raw, err := o.configFlags.ToRawKubeConfigLoader().RawConfig()
	if err == nil && len(raw.Clusters) == 0 && *o.configFlags.APIServer == "" {
		return nil, "no cluster configured: no kubeconfig found"
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return nil, err.Error()
	}
	cfg.Timeout = 5 * time.Second // an absent cluster should not hang `version`
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err.Error()
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return nil, fmt.Sprintf("cluster at %s did not answer: %v", cfg.Host, err)
	}
	return v, ""
}
