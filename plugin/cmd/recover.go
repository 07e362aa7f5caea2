package cmd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/recovery"
)

// RecoverOptions are the inputs of `kubectl selfhost recover`.
type RecoverOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags
	Recovery    recovery.Options
	Etcd        struct{ Endpoint, CA, Cert, Key, Prefix string }
	DryRun      bool

	client  kubernetes.Interface
	dynamic dynamic.Interface
}

// adminKubeconfig is kubeadm's, which recover uses unless told otherwise.
const adminKubeconfig = "/etc/kubernetes/admin.conf"

// NewRecoverCommand returns `kubectl selfhost recover`.
func NewRecoverCommand(streams genericiooptions.IOStreams, configFlags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &RecoverOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Bring back a self-hosted control plane that has no API server left, from etcd",
		Long: `Recover runs on a control-plane host, as root, when no API server answers
and no checkpoint can start one (for example the kube-apiserver and
pod-checkpointer DaemonSets were deleted, and the checkpoints went with them).
It reads, straight from the local etcd with the API server's etcd client
certificate, the kube-apiserver DaemonSet (or, when it was deleted, its copy
in the recovery record, ConfigMap kube-system/selfhost-recovery, which
bootstrap and start keep) and the Secrets and ConfigMaps it mounts. Then it:
  1. writes those Secrets and ConfigMaps to /etc/kubernetes/selfhost-recover
     (0600 files in 0700 directories) and a static kube-apiserver from the
     DaemonSet's spec to the kubelet's manifest directory;
  2. waits for /readyz, and creates the kube-apiserver and pod-checkpointer
     DaemonSets if the API lacks them;
  3. waits until the self-hosted API server is Ready on this node and
     checkpointed, then removes its static pod and the copies.
It prints what it read and wrote, never a Secret's content. Data encrypted at
rest cannot be read: recover says so and changes nothing. --dry-run prints the
static manifest without writing anything. A rerun resumes.`,
		Example: `  sudo kubectl selfhost recover
  sudo kubectl selfhost recover --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if err := o.Complete(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.BoolVar(&o.DryRun, "dry-run", false, "read etcd and print the static manifest; write nothing")
	f.StringVar(&o.Recovery.PodManifestDir, "pod-manifest-path", "/etc/kubernetes/manifests", "the kubelet's static pod directory")
	f.StringVar(&o.Recovery.NodeName, "node-name", host, "this host's node name")
	f.DurationVar(&o.Recovery.StepTimeout, "timeout", 5*time.Minute, "how long each step may take")
	f.StringVar(&o.Etcd.Endpoint, "etcd-endpoint", "https://127.0.0.1:2379", "the local etcd's client URL")
	f.StringVar(&o.Etcd.CA, "etcd-cafile", "/etc/kubernetes/pki/etcd/ca.crt", "etcd's CA certificate")
	f.StringVar(&o.Etcd.Cert, "etcd-certfile", "/etc/kubernetes/pki/apiserver-etcd-client.crt", "a client certificate etcd accepts")
	f.StringVar(&o.Etcd.Key, "etcd-keyfile", "/etc/kubernetes/pki/apiserver-etcd-client.key", "its key")
	f.StringVar(&o.Etcd.Prefix, "etcd-prefix", "/registry", "kube-apiserver's --etcd-prefix")
	o.Recovery.Dir = recovery.DefaultDir
	return cmd
}

// Validate rejects bad flags before anything is read.
func (o *RecoverOptions) Validate() error {
	if o.Recovery.StepTimeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if u, err := url.Parse(o.Etcd.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--etcd-endpoint %q is not an https:// URL", o.Etcd.Endpoint)
	}
	if !strings.HasPrefix(o.Etcd.Prefix, "/") {
		return fmt.Errorf("--etcd-prefix %q must start with /", o.Etcd.Prefix)
	}
	if o.Recovery.NodeName == "" {
		return errors.New("--node-name is empty and the host name is unknown")
	}
	return nil
}

// Complete builds the clients: kubeadm's admin kubeconfig unless
// --kubeconfig or $KUBECONFIG names another.
func (o *RecoverOptions) Complete() error {
	if o.configFlags.KubeConfig != nil && *o.configFlags.KubeConfig == "" && os.Getenv("KUBECONFIG") == "" {
		*o.configFlags.KubeConfig = adminKubeconfig
	}
	var err error
	o.client, o.dynamic, err = applyClientsFor(o.configFlags, 10*time.Second) // the API may be gone: fail fast and poll
	return err
}

// Run reads etcd, checks, then recovers (or prints the manifest).
func (o *RecoverOptions) Run(ctx context.Context) error {
	start := time.Now()
	status := progress.NewStatus(o.Out, isTerminal(o.Out))
	check := status.Start("Running preflight checks and reading etcd")
	rc, settled, err := o.preflight(ctx, status)
	if err != nil {
		check.End(err)
		return fmt.Errorf("preflight: %w; nothing was changed", err)
	}
	check.End(nil)
	if settled && !o.DryRun {
		fmt.Fprintf(o.Out, "Nothing to recover: the self-hosted API server is Ready and checkpointed on %s. Check the cluster with: kubectl selfhost verify\n", o.Recovery.NodeName)
		return nil
	}
	fmt.Fprintf(o.Out, "Read from etcd at %s:\n", o.Etcd.Endpoint)
	for _, r := range rc.Source.Read {
		fmt.Fprintf(o.Out, "  %s\n", r)
	}
	for _, comp := range []string{"kube-apiserver", "kube-controller-manager"} {
		if from, ok := rc.Source.From[comp]; ok && rc.Source.Static[comp] != nil {
			fmt.Fprintf(o.Out, "A static %s runs from %s.\n", comp, from)
		}
	}
	files := rc.Source.Files(o.Recovery.Dir)
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	if o.DryRun {
		fmt.Fprintf(o.Out, "Would write %d files (0600): %s\n", len(names), strings.Join(names, ", "))
		manifests := rc.Manifests()
		for _, file := range []string{"kube-apiserver.yaml", "kube-controller-manager.yaml"} {
			if m, ok := manifests[file]; ok {
				fmt.Fprintf(o.Out, "Would write %s:\n---\n%s", filepath.Join(o.Recovery.PodManifestDir, file), m)
			}
		}
		return nil
	}
	if err := recovery.Run(ctx, rc); err != nil {
		return fmt.Errorf("%w; run recover again to resume", err)
	}
	fmt.Fprintf(o.Out, "Wrote, and removed again, %d static pods in %s and %d credential files in %s.\n", len(rc.Manifests()), o.Recovery.PodManifestDir, len(names), o.Recovery.Dir)
	fmt.Fprintf(o.Out, "The self-hosted API server is back on %s (%s).\n", o.Recovery.NodeName, time.Since(start).Round(time.Second))
	if stuck := rc.NotReadyControlPlane(ctx); len(stuck) > 0 {
		fmt.Fprintf(o.Out, "Still NotReady: %s. A kubelet that talks only to the API server on its own node (kubeadm's ControlPlaneKubeletLocalMode) needs recover run on its node too.\n", strings.Join(stuck, ", "))
		return nil
	}
	fmt.Fprintln(o.Out, "Check the cluster with: kubectl selfhost verify")
	return nil
}

// preflight changes nothing: root, the manifest directory, etcd's data,
// no foreign static API server; settled when there is nothing to do.
func (o *RecoverOptions) preflight(ctx context.Context, status *progress.Status) (*recovery.Context, bool, error) {
	if os.Geteuid() != 0 {
		return nil, false, errors.New("recover writes static pods and credentials on this host: run it as root")
	}
	if fi, err := os.Stat(o.Recovery.PodManifestDir); err != nil || !fi.IsDir() {
		return nil, false, fmt.Errorf("%s is not a directory: is this a control-plane host? (--pod-manifest-path)", o.Recovery.PodManifestDir)
	}
	etcd, err := recovery.NewEtcd(o.Etcd.Endpoint, o.Etcd.CA, o.Etcd.Cert, o.Etcd.Key, 10*time.Second)
	if err != nil {
		return nil, false, err
	}
	source, err := recovery.Read(ctx, etcd, o.Etcd.Prefix)
	if err != nil {
		return nil, false, err
	}
	rc, err := recovery.NewContext(o.Recovery, source, o.client, o.dynamic, status)
	if err != nil {
		return nil, false, err
	}
	ours, err := rc.OursOnDisk()
	if err != nil || ours {
		return rc, false, err // a recover to resume
	}
	if answered, _ := rc.AtStart(ctx); !answered {
		return rc, false, nil
	}
	if rc.Settled(ctx) {
		return rc, true, nil
	}
	if reaches, err := rc.KubeletReachesAPI(ctx); err != nil || !reaches {
		// Its kubelet reaches no API server: with kubeadm's local mode it
		// talks only to the one on its own node.
		return rc, false, err
	}
	return nil, false, errors.New("the API answers and this node's kubelet reaches it: recover is for a node whose kubelet reaches no API server; run kubectl selfhost verify to see what is wrong, and kubectl selfhost bootstrap to repair it")
}
