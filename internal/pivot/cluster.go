package pivot

import (
	"context"
	"fmt"
	"net/url"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Shorthands for the facts every action uses.
const (
	Namespace         = kube.Namespace
	ControlPlaneLabel = kube.ControlPlaneLabel
)

// Components are the static control-plane pods the pivot replaces; etcd stays static.
var Components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// Cluster is what the pivot learns from a kubeadm-shaped cluster.
type Cluster struct {
	KubernetesVersion string
	ControlPlane      []string // node names, sorted
	Endpoint          *url.URL // the control-plane endpoint (kind's load balancer)
	PodCIDR           string
	ServiceCIDR       string
	DNSServiceIP      string
	// Mirror holds the mirror pods of the static control plane: component -> node -> pod.
	Mirror map[string]map[string]*corev1.Pod
}

// clusterConfiguration is the part of kubeadm's ClusterConfiguration we read.
type clusterConfiguration struct {
	KubernetesVersion    string `json:"kubernetesVersion"`
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
	Networking           struct {
		PodSubnet     string `json:"podSubnet"`
		ServiceSubnet string `json:"serviceSubnet"`
	} `json:"networking"`
}

// Discover reads the cluster's shape through the API.
func Discover(ctx context.Context, client kubernetes.Interface) (*Cluster, error) {
	c := &Cluster{}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: ControlPlaneLabel})
	if err != nil {
		return nil, fmt.Errorf("cannot list control-plane nodes: %w", err)
	}
	for _, n := range nodes.Items {
		c.ControlPlane = append(c.ControlPlane, n.Name)
	}
	sort.Strings(c.ControlPlane)
	if c.Mirror, err = mirrorPods(ctx, client); err != nil {
		return nil, err
	}

	cm, err := client.CoreV1().ConfigMaps(Namespace).Get(ctx, "kubeadm-config", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("this cluster was not made by kubeadm: ConfigMap %s/kubeadm-config does not exist", Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read ConfigMap %s/kubeadm-config: %w", Namespace, err)
	}
	var cc clusterConfiguration
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
		return nil, fmt.Errorf("kubeadm's ClusterConfiguration does not parse: %w", err)
	}
	c.KubernetesVersion = cc.KubernetesVersion
	c.PodCIDR, c.ServiceCIDR = cc.Networking.PodSubnet, cc.Networking.ServiceSubnet
	if c.Endpoint, err = endpoint(ctx, client, cc.ControlPlaneEndpoint); err != nil {
		return nil, err
	}
	svc, err := client.CoreV1().Services(Namespace).Get(ctx, "kube-dns", metav1.GetOptions{})
	if err == nil {
		c.DNSServiceIP = svc.Spec.ClusterIP
	}
	return c, nil
}

// endpoint prefers kube-public/cluster-info, which kubeadm keeps for joining nodes.
func endpoint(ctx context.Context, client kubernetes.Interface, fallback string) (*url.URL, error) {
	server := ""
	if cm, err := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{}); err == nil {
		if cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"])); err == nil {
			for _, cl := range cfg.Clusters {
				server = cl.Server
			}
		}
	}
	if server == "" && fallback != "" {
		server = "https://" + fallback
	}
	u, err := url.Parse(server)
	if server == "" || err != nil || u.Port() == "" {
		return nil, fmt.Errorf("cannot tell the control-plane endpoint: kube-public/cluster-info and kubeadm's controlPlaneEndpoint give %q", server)
	}
	return u, nil
}

// mirrorPods lists the static control-plane pods by component and node.
func mirrorPods(ctx context.Context, client kubernetes.Interface) (map[string]map[string]*corev1.Pod, error) {
	pods, err := client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "tier=control-plane"})
	if err != nil {
		return nil, fmt.Errorf("cannot list pods in %s: %w", Namespace, err)
	}
	out := map[string]map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !checkpoint.IsStaticMirror(p) {
			continue
		}
		comp := p.Labels["component"]
		if out[comp] == nil {
			out[comp] = map[string]*corev1.Pod{}
		}
		out[comp][p.Spec.NodeName] = p
	}
	return out, nil
}

// MirrorPod returns the mirror pod of component on node, if any.
func MirrorPod(ctx context.Context, client kubernetes.Interface, component, node string) (*corev1.Pod, error) {
	m, err := mirrorPods(ctx, client)
	if err != nil {
		return nil, err
	}
	return m[component][node], nil
}
