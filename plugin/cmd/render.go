package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
)

// RenderOptions are the inputs of `kubectl selfhost render`.
type RenderOptions struct {
	genericiooptions.IOStreams
	AssetDir string
	Force    bool
	Input    render.Input

	config *render.Config
}

// NewRenderCommand returns `kubectl selfhost render`.
func NewRenderCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &RenderOptions{IOStreams: streams, Input: render.DefaultInput()}
	cmd := &cobra.Command{
		Use:   "render --asset-dir DIR",
		Short: "Write every asset of a self-hosted control plane, offline",
		Long: `Render writes certificates, kubeconfigs and manifests in bootkube's layout:
  auth/                 admin and kubelet-bootstrap (token) kubeconfigs
  tls/                  CAs, serving and client certificates, service-account keys
  bootstrap-manifests/  temporary static pods for a fresh cluster
  manifests/            the self-hosted control plane and add-ons
  etcd/, tls/etcd/      a static etcd member per control-plane node (--etcd-members)
  kubelet/              KubeletConfiguration per role and a systemd drop-in
No cluster is contacted. Every input is checked before anything is written.`,
		Example: `  kubectl selfhost render --asset-dir ./assets --api-servers https://10.0.0.10:6443
  kubectl selfhost render --asset-dir ./assets --ca-cert ca.crt --ca-key ca.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run()
		},
	}
	f := cmd.Flags()
	in := &o.Input
	f.StringVar(&o.AssetDir, "asset-dir", "", "directory to write the assets to (required)")
	f.BoolVar(&o.Force, "force", false, "replace what a non-empty asset directory holds")
	f.StringSliceVar(&in.APIServers, "api-servers", in.APIServers, "API server URLs; the first is what kubeconfigs and components use")
	f.StringSliceVar(&in.APIServerAltNames, "api-server-alt-names", nil, "extra API server certificate names: DNS=<name> or IP=<address>")
	f.StringVar(&in.PodCIDR, "pod-cidr", in.PodCIDR, "pod network range")
	f.StringVar(&in.ServiceCIDR, "service-cidr", in.ServiceCIDR, "service IP range")
	f.StringVar(&in.ClusterDomain, "cluster-domain", in.ClusterDomain, "cluster DNS domain")
	f.StringSliceVar(&in.EtcdServers, "etcd-servers", in.EtcdServers, "etcd client URLs of an external etcd")
	f.StringSliceVar(&in.EtcdMembers, "etcd-members", nil, "a static etcd member on each control-plane node, as name=ip (the node's name); instead of --etcd-servers")
	f.DurationVar(&in.BootstrapTokenTTL, "bootstrap-token-ttl", in.BootstrapTokenTTL, "how long kubelets may join with the rendered bootstrap token (0: until it is deleted)")
	f.BoolVar(&in.KubeletInsecureTLS, "metrics-kubelet-insecure-tls", false, "let metrics-server accept self-signed kubelet certificates")
	f.BoolVar(&in.DNSOffControlPlane, "dns-off-control-plane", false, "keep CoreDNS off the control-plane nodes (give the cluster workers): DNS then outlives a restart of every one")
	f.StringVar(&in.KubernetesVersion, "kubernetes-version", in.KubernetesVersion, "Kubernetes version of the control-plane images")
	f.StringVar(&in.CheckpointerImage, "checkpointer-image", in.CheckpointerImage, "pod-checkpointer image")
	f.StringVar(&in.KeyAlgorithm, "key-algorithm", in.KeyAlgorithm, fmt.Sprintf("private key algorithm: one of %v", pki.KeyAlgorithms))
	f.StringVar(&in.CACert, "ca-cert", "", "sign with this existing CA certificate (with --ca-key)")
	f.StringVar(&in.CAKey, "ca-key", "", "key of --ca-cert")
	f.StringVar(&in.EtcdCACert, "etcd-ca-cert", "", "sign the etcd client certificate with this existing etcd CA (with --etcd-ca-key)")
	f.StringVar(&in.EtcdCAKey, "etcd-ca-key", "", "key of --etcd-ca-cert")
	f.StringVar(&in.AppsNamespace, "apps-namespace", "", "also render a namespace for the cluster's own apps")
	return cmd
}

// Complete has nothing to derive: render needs no cluster.
func (o *RenderOptions) Complete() error { return nil }

// Validate checks every input; nothing is written before it passes.
func (o *RenderOptions) Validate() error {
	if o.AssetDir == "" {
		return fmt.Errorf("--asset-dir is required")
	}
	c, err := o.Input.Parse()
	if err != nil {
		return err
	}
	o.config = c
	return nil
}

// Run renders in memory, then writes.
func (o *RenderOptions) Run() error {
	start := time.Now()
	assets, err := render.Assets(o.config)
	if err != nil {
		return err
	}
	if err := render.Write(o.AssetDir, assets, o.Force); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Rendered %d assets to %s in %s (keys: %s)\n", len(assets), o.AssetDir,
		time.Since(start).Round(time.Millisecond), o.config.KeyAlgorithm)
	fmt.Fprintf(o.Out, "  auth/ tls/ %s/ %s/ kubelet/", render.BootstrapManifestDir, render.ManifestDir)
	if len(o.config.EtcdMembers) > 0 {
		fmt.Fprintf(o.Out, " %s/", render.EtcdDir)
	}
	fmt.Fprintln(o.Out)
	return nil
}
