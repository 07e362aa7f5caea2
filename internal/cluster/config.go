// Package cluster is the one description of a cluster that every step reads.
// render builds it from its flags, bootstrap reads it from kubeadm's
// ClusterConfiguration, and render.ValuesFor turns it into template values.
package cluster

import (
	"context"
	"fmt"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// DefaultDomain is the cluster DNS domain when nothing names another, as in kubeadm.
const DefaultDomain = "cluster.local"

// Config describes the self-hosted control plane to build or check.
type Config struct {
	KubernetesVersion string
	// Endpoint is the control-plane endpoint: the load balancer, or the first API server.
	Endpoint      *url.URL
	EtcdServers   []string
	PodCIDR       string
	ServiceCIDR   string
	ClusterDomain string
	DNSServiceIP  string
	Images        images.Set
	// AppsNamespace, when set, is created for the cluster's own apps.
	AppsNamespace        string
	ControlPlaneReplicas int
	// KubeletInsecureTLS lets metrics-server accept the kubelets'
	// self-signed serving certificates, as kind's are.
	KubeletInsecureTLS bool
	// DNSOffControlPlane keeps CoreDNS off the control-plane nodes: the
	// cluster has other nodes, and DNS then outlives a restart of every
	// control-plane node.
	DNSOffControlPlane bool
}

// APIServerNames are the in-cluster names the API server's serving
// certificate must carry.
func (c Config) APIServerNames() []string {
	return []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + c.ClusterDomain}
}

// kubeadmConfiguration is the part of kubeadm's ClusterConfiguration we read.
type kubeadmConfiguration struct {
	KubernetesVersion    string `json:"kubernetesVersion"`
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
	Networking           struct {
		DNSDomain     string `json:"dnsDomain"`
		PodSubnet     string `json:"podSubnet"`
		ServiceSubnet string `json:"serviceSubnet"`
	} `json:"networking"`
}

// FromKubeadm reads a kubeadm-made cluster's configuration through the API:
// kubeadm's ClusterConfiguration, kube-public/cluster-info and the kube-dns
// Service. Images and the user's choices are left for the caller.
func FromKubeadm(ctx context.Context, client kubernetes.Interface) (Config, error) {
	kc, found, err := readKubeadm(ctx, client)
	if err != nil {
		return Config{}, err
	}
	if !found {
		return Config{}, fmt.Errorf("this cluster was not made by kubeadm: ConfigMap %s/kubeadm-config does not exist", kube.Namespace)
	}
	c := Config{
		KubernetesVersion: kc.KubernetesVersion,
		PodCIDR:           kc.Networking.PodSubnet,
		ServiceCIDR:       kc.Networking.ServiceSubnet,
		ClusterDomain:     kc.domain(),
	}
	if c.Endpoint, err = endpoint(ctx, client, kc.ControlPlaneEndpoint); err != nil {
		return Config{}, err
	}
	if svc, err := client.CoreV1().Services(kube.Namespace).Get(ctx, "kube-dns", metav1.GetOptions{}); err == nil {
		c.DNSServiceIP = svc.Spec.ClusterIP
	}
	return c, nil
}

// Domain is the cluster's DNS domain: kubeadm's when kubeadm made the
// cluster, DefaultDomain otherwise.
func Domain(ctx context.Context, client kubernetes.Interface) (string, error) {
	kc, _, err := readKubeadm(ctx, client)
	if err != nil {
		return "", err
	}
	return kc.domain(), nil
}

func (kc kubeadmConfiguration) domain() string {
	if kc.Networking.DNSDomain == "" {
		return DefaultDomain
	}
	return kc.Networking.DNSDomain
}

// readKubeadm reads kubeadm's ClusterConfiguration; found is false on a
// cluster kubeadm did not make.
func readKubeadm(ctx context.Context, client kubernetes.Interface) (kc kubeadmConfiguration, found bool, err error) {
	cm, err := client.CoreV1().ConfigMaps(kube.Namespace).Get(ctx, "kubeadm-config", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return kc, false, nil
	}
	if err != nil {
		return kc, false, fmt.Errorf("cannot read ConfigMap %s/kubeadm-config: %w", kube.Namespace, err)
	}
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &kc); err != nil {
		return kc, false, fmt.Errorf("kubeadm's ClusterConfiguration does not parse: %w", err)
	}
	return kc, true, nil
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
