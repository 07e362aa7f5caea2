package upgrade

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// maxKubeletSkew is how many minors a kubelet may trail the API server
// (the version skew policy since v1.28); kube-proxy may differ from its
// node's kubelet by as many.
const maxKubeletSkew = 3

// CheckPath allows the same minor or the next one, never a lower minor.
func CheckPath(from, to string) error {
	f, err1 := version.ParseSemantic(strings.TrimPrefix(from, "v"))
	t, err2 := version.ParseSemantic(strings.TrimPrefix(to, "v"))
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot compare versions %q and %q", from, to)
	}
	switch {
	case t.Major() != f.Major():
		return fmt.Errorf("%s to %s changes the major version", from, to)
	case t.Minor() < f.Minor():
		return fmt.Errorf("%s to %s goes down a minor version, which Kubernetes does not support", from, to)
	case t.Minor() > f.Minor()+1:
		return fmt.Errorf("%s to %s skips a minor version; upgrade to v%d.%d first", from, to, f.Major(), f.Minor()+1)
	}
	return nil
}

// CheckSkew applies the version skew policy to every node at the target
// version: no kubelet newer than the API server, none more than three
// minors older; kube-proxy, moved to the target, then stays within three
// minors of each node's kubelet.
func CheckSkew(to string, nodes []corev1.Node) error {
	t, err := version.ParseSemantic(strings.TrimPrefix(to, "v"))
	if err != nil {
		return fmt.Errorf("cannot parse version %q", to)
	}
	var bad []string
	for _, n := range nodes {
		kv := n.Status.NodeInfo.KubeletVersion
		k, err := version.ParseGeneric(strings.TrimPrefix(kv, "v"))
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s reports kubelet version %q", n.Name, kv))
		case k.Major() != t.Major() || k.Minor() > t.Minor():
			bad = append(bad, fmt.Sprintf("%s runs kubelet %s, newer than %s", n.Name, kv, to))
		case t.Minor()-k.Minor() > maxKubeletSkew:
			bad = append(bad, fmt.Sprintf("%s runs kubelet %s, more than %d minors behind %s; upgrade it first", n.Name, kv, maxKubeletSkew, to))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the version skew policy does not allow %s: %s", to, strings.Join(bad, "; "))
	}
	return nil
}

// Needed is which image a node must hold for the upgrade.
type Needed struct {
	Image string
	// ControlPlaneOnly: only control-plane nodes run it.
	ControlPlaneOnly bool
}

// MissingImages names, one entry per node, the images it would have to pull: those
// absent from the images the kubelet reports in the node's status.
func MissingImages(nodes []corev1.Node, need []Needed) []string {
	var missing []string
	for _, n := range nodes {
		_, cp := n.Labels[kube.ControlPlaneLabel]
		var lacks []string
		for _, want := range need {
			if (!want.ControlPlaneOnly || cp) && !holdsImage(n, want.Image) {
				lacks = append(lacks, want.Image)
			}
		}
		if len(lacks) > 0 {
			missing = append(missing, fmt.Sprintf("%s lacks %s", n.Name, strings.Join(lacks, ", ")))
		}
	}
	return missing
}

func holdsImage(n corev1.Node, image string) bool {
	alias := strings.TrimPrefix(image, "docker.io/")
	for _, img := range n.Status.Images {
		if slices.ContainsFunc(img.Names, func(name string) bool {
			return name == image || strings.TrimPrefix(name, "docker.io/") == alias
		}) {
			return true
		}
	}
	return false
}

// etcdHealthy asks the API server's own etcd check.
func etcdHealthy(ctx context.Context, c *Context) error {
	body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz/etcd").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("etcd is not healthy: /readyz/etcd answered %v", err)
	}
	if s := strings.TrimSpace(string(body)); s != "ok" {
		return fmt.Errorf("etcd is not healthy: /readyz/etcd answered %q", s)
	}
	return nil
}

// nodes lists every node.
func listNodes(ctx context.Context, c *Context) ([]corev1.Node, error) {
	list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot list the nodes: %w", err)
	}
	return list.Items, nil
}

// Preflight checks, changing nothing, that the request may go ahead: the
// version path, the skew policy, the images on the nodes and etcd. The
// caller checks verify, which an upgrade under way may fail. With
// allowPull, images the nodes lack are named, not refused: they will pull them.
func Preflight(ctx context.Context, c *Context, changes []Change, allowPull bool) (string, error) {
	nodes, err := listNodes(ctx, c)
	if err != nil {
		return "", err
	}
	var done []string
	if to := c.Request.Version; to != "" {
		w, err := getWorkload(ctx, c, Components[0])
		if err != nil {
			return "", err
		}
		from := ImageVersion(w.template().Spec.Containers[0].Image)
		if from == "" {
			v, err := c.Client.Discovery().ServerVersion()
			if err != nil {
				return "", fmt.Errorf("cannot read the API server's version: %w", err)
			}
			from = v.GitVersion
		}
		if err := CheckPath(from, to); err != nil {
			return "", err
		}
		if err := CheckSkew(to, nodes); err != nil {
			return "", err
		}
		done = append(done, fmt.Sprintf("%s to %s is allowed for %d kubelets", from, to, len(nodes)))
	}
	switch missing := MissingImages(nodes, Needs(changes)); {
	case len(missing) > 0 && !allowPull:
		return "", fmt.Errorf("%s; load the images onto those nodes first, or pass --allow-pull if the nodes can pull them", strings.Join(missing, "; "))
	case len(missing) > 0:
		done = append(done, "to be pulled: "+strings.Join(missing, "; "))
	default:
		done = append(done, "every node holds the images it needs")
	}
	if err := etcdHealthy(ctx, c); err != nil {
		return "", err
	}
	return strings.Join(append(done, "etcd is healthy"), "; "), nil
}
