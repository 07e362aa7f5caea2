// Package barenode runs Kubernetes nodes the way kind does, as privileged
// containers of a kindest/node image on the kind network, but without
// kubeadm: the kubelets get render's files and the cluster comes up through
// `kubectl selfhost start`. Its functions are e2e-framework environment
// funcs, so a test reads: create the nodes, render, install, start.
package barenode

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/types"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
)

// Cluster is a set of bare nodes and kind's load balancer in front of the
// control-plane ones.
type Cluster struct {
	Name          string
	Image         string
	ControlPlanes []string
	Workers       []string
	// AssetDir holds render's assets once Render ran; Kubeconfig reaches
	// the API through the load balancer's published port once Start ran.
	AssetDir   string
	Kubeconfig string
	// StartOutput is what `kubectl selfhost start` printed.
	StartOutput string
}

// New names a cluster of controlPlanes + workers nodes, <name>-cpN and <name>-wN.
func New(name, image string, controlPlanes, workers int) *Cluster {
	c := &Cluster{Name: name, Image: image}
	for i := 1; i <= controlPlanes; i++ {
		c.ControlPlanes = append(c.ControlPlanes, fmt.Sprintf("%s-cp%d", name, i))
	}
	for i := 1; i <= workers; i++ {
		c.Workers = append(c.Workers, fmt.Sprintf("%s-w%d", name, i))
	}
	return c
}

// LoadBalancer is the load balancer's container name, and its name on the network.
func (c *Cluster) LoadBalancer() string { return c.Name + "-lb" }

func (c *Cluster) nodes() []string {
	return append(append([]string{}, c.ControlPlanes...), c.Workers...)
}

// Labels kind's, so that `kind load docker-image --name` finds the nodes.
const (
	clusterLabel = "io.x-k8s.kind.cluster"
	roleLabel    = "io.x-k8s.kind.role"
	network      = "kind"
	apiPort      = "6443"
)

// Create starts the node containers with kind's arguments, and the load
// balancer with kind's configuration for these control-plane nodes.
func (c *Cluster) Create() types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		start := time.Now()
		if err := c.destroy(ctx); err != nil {
			return ctx, err
		}
		if exec.CommandContext(ctx, "docker", "network", "inspect", network).Run() != nil {
			if err := run(ctx, nil, "docker", "network", "create", network); err != nil {
				return ctx, err
			}
		}
		for _, n := range c.nodes() {
			role := "worker"
			if strings.Contains(n, "-cp") {
				role = "control-plane"
			}
			// As kind's docker provider runs a node (provision.go).
			err := run(ctx, nil, "docker", "run", "--name", n, "--hostname", n, "--detach", "--tty",
				"--label", clusterLabel+"="+c.Name, "--label", roleLabel+"="+role, "--net", network,
				"--restart=on-failure:1", "--init=false", "--cgroupns=private", "--privileged",
				"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
				"--tmpfs", "/tmp", "--tmpfs", "/run", "--volume", "/var", "--volume", "/lib/modules:/lib/modules:ro", c.Image)
			if err != nil {
				return ctx, err
			}
		}
		if err := c.createLoadBalancer(ctx); err != nil {
			return ctx, err
		}
		log.Printf("bare nodes %s created in %s", strings.Join(c.nodes(), ", "), time.Since(start).Round(time.Second))
		return ctx, nil
	}
}

// Render writes the assets for these nodes: a static etcd member on each
// control-plane node and an API server certificate for the load balancer,
// the nodes and the published port on loopback.
func (c *Cluster) Render(selfhost string, extraArgs ...string) types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		dir, err := os.MkdirTemp("", c.Name+"-assets-")
		if err != nil {
			return ctx, err
		}
		c.AssetDir = filepath.Join(dir, "assets")
		var members []string
		for _, n := range c.ControlPlanes {
			ip, err := Address(ctx, n)
			if err != nil {
				return ctx, err
			}
			members = append(members, n+"="+ip)
		}
		args := append([]string{"render", "--asset-dir", c.AssetDir,
			"--api-servers", "https://" + c.LoadBalancer() + ":" + apiPort, "--api-server-alt-names", "IP=127.0.0.1",
			"--etcd-members", strings.Join(members, ",")}, extraArgs...)
		return ctx, run(ctx, nil, selfhost, args...)
	}
}

// LoadImages sends images from the host's Docker to every node, as kind load does.
func (c *Cluster) LoadImages(kind string, images ...string) types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		start := time.Now()
		if err := run(ctx, nil, kind, append([]string{"load", "docker-image", "--name", c.Name}, images...)...); err != nil {
			return ctx, err
		}
		log.Printf("loaded %d images into %s in %s", len(images), c.Name, time.Since(start).Round(time.Second))
		return ctx, nil
	}
}

// kindKubelet is what kind's kubeadm configuration adds for a kubelet in a
// container: the cgroup its entrypoint made, no swap check, and no
// eviction or image GC on the host's shared disk.
const kindKubelet = `cgroupRoot: /kubelet
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard:
  imagefs.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
`

// InstallAssets gives each node exactly the files the README's "from
// scratch" section lists, then starts its kubelet: every node the kubelet
// configuration of its role, the drop-in, the bootstrap kubeconfig and the
// CA certificate; a control-plane node also its etcd member; the first
// control-plane node the whole asset directory.
func (c *Cluster) InstallAssets() types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		for _, n := range c.nodes() {
			files := map[string]string{
				render.KubeletDropIn:     render.NodeKubeletDropInDirectory + "/20-selfhost.conf",
				render.KubeletKubeconfig: render.NodeBootstrapKubeconfig,
				render.CACert:            render.NodeCACert,
			}
			kubeletConfig := render.KubeletWorkerConfig
			if strings.Contains(n, "-cp") {
				kubeletConfig = render.KubeletControlPlaneConfig
				for from, to := range render.EtcdMemberFiles(n) {
					files[from] = to
				}
			}
			for from, to := range files {
				if err := c.copyTo(ctx, n, filepath.Join(c.AssetDir, from), to); err != nil {
					return ctx, err
				}
			}
			kc, err := os.ReadFile(filepath.Join(c.AssetDir, kubeletConfig))
			if err != nil {
				return ctx, err
			}
			kc = append(kc, kindKubelet...)
			if err := run(ctx, bytes.NewReader(kc), "docker", "exec", "-i", n, "sh", "-c", "mkdir -p "+filepath.Dir(render.NodeKubeletConfig)+" && cat > "+render.NodeKubeletConfig); err != nil {
				return ctx, err
			}
			if err := run(ctx, nil, "docker", "exec", n, "sh", "-c", "systemctl daemon-reload && systemctl restart kubelet"); err != nil {
				return ctx, err
			}
		}
		return ctx, run(ctx, nil, "docker", "cp", c.AssetDir, c.ControlPlanes[0]+":"+firstNodeAssets)
	}
}

// copyTo copies a file into a node, keeping an owner-only mode owner-only.
func (c *Cluster) copyTo(ctx context.Context, node, from, to string) error {
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	if err := run(ctx, nil, "docker", "exec", node, "mkdir", "-p", filepath.Dir(to)); err != nil {
		return err
	}
	if err := run(ctx, nil, "docker", "cp", from, node+":"+to); err != nil {
		return err
	}
	return run(ctx, nil, "docker", "exec", node, "chmod", fmt.Sprintf("%o", fi.Mode().Perm()), to)
}

// firstNodeAssets is where the first control-plane node keeps the assets.
const firstNodeAssets = "/root/assets"

// Start runs `kubectl selfhost start` as root on the first control-plane
// node and points cfg at the cluster through the load balancer.
func (c *Cluster) Start(selfhost string, args ...string) types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		first := c.ControlPlanes[0]
		if err := run(ctx, nil, "docker", "cp", selfhost, first+":/usr/local/bin/kubectl-selfhost"); err != nil {
			return ctx, err
		}
		out, err := exec.CommandContext(ctx, "docker", append([]string{"exec", first, "kubectl-selfhost", "start", "--asset-dir", firstNodeAssets}, args...)...).CombinedOutput()
		c.StartOutput = string(out)
		if err != nil {
			return ctx, fmt.Errorf("kubectl selfhost start on %s: %v\n%s", first, err, out)
		}
		if err := c.writeKubeconfig(ctx); err != nil {
			return ctx, err
		}
		cfg.WithKubeconfigFile(c.Kubeconfig).WithClient(nil)
		return ctx, nil
	}
}

// KillStart runs start on the first control-plane node and SIGKILLs it
// there once it prints marker; it returns what start printed until then.
func (c *Cluster) KillStart(ctx context.Context, selfhost, marker string) (string, error) {
	first := c.ControlPlanes[0]
	if err := run(ctx, nil, "docker", "cp", selfhost, first+":/usr/local/bin/kubectl-selfhost"); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "docker", "exec", first, "kubectl-selfhost", "start", "--asset-dir", firstNodeAssets)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var printed strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), marker) {
			// The process inside the node, not the docker exec client.
			if err := run(ctx, nil, "docker", "exec", first, "pkill", "-KILL", "-f", "kubectl-selfhost start"); err != nil {
				return printed.String(), err
			}
			break
		}
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if !strings.Contains(printed.String(), marker) {
		return printed.String(), fmt.Errorf("start ended (%v) before it printed %q", err, marker)
	}
	return printed.String(), nil
}

// writeKubeconfig is the admin kubeconfig with the load balancer's port
// published on loopback.
func (c *Cluster) writeKubeconfig(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "docker", "port", c.LoadBalancer(), apiPort+"/tcp").Output()
	if err != nil {
		return fmt.Errorf("docker port %s: %w", c.LoadBalancer(), err)
	}
	hostPort := strings.Fields(string(out))[0] // 127.0.0.1:NNNNN
	admin, err := os.ReadFile(filepath.Join(c.AssetDir, render.AdminKubeconfig))
	if err != nil {
		return err
	}
	admin = bytes.ReplaceAll(admin, []byte("https://"+c.LoadBalancer()+":"+apiPort), []byte("https://"+hostPort))
	c.Kubeconfig = filepath.Join(filepath.Dir(c.AssetDir), "kubeconfig")
	return os.WriteFile(c.Kubeconfig, admin, 0o600)
}

// Destroy removes the containers and the assets.
func (c *Cluster) Destroy() types.EnvFunc {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		if c.AssetDir != "" {
			os.RemoveAll(filepath.Dir(c.AssetDir))
		}
		return ctx, c.destroy(ctx)
	}
}

func (c *Cluster) destroy(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+clusterLabel+"="+c.Name).Output()
	if err != nil {
		return fmt.Errorf("docker ps: %w", err)
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		return run(ctx, nil, "docker", append([]string{"rm", "-f", "-v"}, ids...)...)
	}
	return nil
}

// ExportLogs writes each node's kubelet and containerd journal and the
// load balancer's log under dir.
func (c *Cluster) ExportLogs(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range c.nodes() {
		out, _ := exec.CommandContext(ctx, "docker", "exec", n, "journalctl", "--no-pager", "-o", "short-precise", "-u", "kubelet", "-u", "containerd").CombinedOutput()
		if err := os.WriteFile(filepath.Join(dir, n+".log"), out, 0o644); err != nil {
			return err
		}
	}
	out, _ := exec.CommandContext(ctx, "docker", "logs", c.LoadBalancer()).CombinedOutput()
	return os.WriteFile(filepath.Join(dir, c.LoadBalancer()+".log"), out, 0o644)
}

// Address is a node container's address on the kind network.
func Address(ctx context.Context, container string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).Output()
	if err != nil {
		return "", fmt.Errorf("docker inspect %s: %w", container, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func run(ctx context.Context, stdin *bytes.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return nil
}
