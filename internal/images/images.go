// Package images names every container image the self-hosted control plane
// and its add-ons run. The names are the upstream ones, so rendered manifests
// are exactly what a connected user applies; the air-gapped e2e harness builds
// images under these same names.
package images

import (
	"fmt"
	"regexp"
)

// Default versions. KubernetesVersion also picks the control-plane image tags.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "3.7.0-0"
	CoreDNSVersion    = "v1.14.6"
	PauseVersion      = "3.10.2"
	FlannelVersion    = "v0.27.4"
	FlannelCNIVersion = "v1.7.1-flannel1"
	MetricsVersion    = "v0.8.0"
	// CheckpointerVersion is the pod-checkpointer image tag this plugin release deploys.
	CheckpointerVersion = "v0.1.0"
)

// Set is the full list of images, one field per component.
type Set struct {
	APIServer         string `json:"apiserver"`
	ControllerManager string `json:"controllerManager"`
	Scheduler         string `json:"scheduler"`
	Proxy             string `json:"proxy"`
	Etcd              string `json:"etcd"`
	CoreDNS           string `json:"coredns"`
	Pause             string `json:"pause"`
	Flannel           string `json:"flannel"`
	FlannelCNI        string `json:"flannelCNI"`
	MetricsServer     string `json:"metricsServer"`
	Checkpointer      string `json:"checkpointer"`
}

// DefaultCheckpointer is the pod-checkpointer image a plain render deploys.
const DefaultCheckpointer = "ghcr.io/kubectl-selfhost/pod-checkpointer:" + CheckpointerVersion

// Upstream returns the upstream image names for a Kubernetes version.
// An empty checkpointer means DefaultCheckpointer.
func Upstream(kubernetesVersion, checkpointer string) Set {
	if checkpointer == "" {
		checkpointer = DefaultCheckpointer
	}
	k8s := func(name string) string { return fmt.Sprintf("registry.k8s.io/%s:%s", name, kubernetesVersion) }
	return Set{
		APIServer:         k8s("kube-apiserver"),
		ControllerManager: k8s("kube-controller-manager"),
		Scheduler:         k8s("kube-scheduler"),
		Proxy:             k8s("kube-proxy"),
		Etcd:              "registry.k8s.io/etcd:" + EtcdVersion,
		CoreDNS:           "registry.k8s.io/coredns/coredns:" + CoreDNSVersion,
		Pause:             "registry.k8s.io/pause:" + PauseVersion,
		Flannel:           "docker.io/flannel/flannel:" + FlannelVersion,
		FlannelCNI:        "docker.io/flannel/flannel-cni-plugin:" + FlannelCNIVersion,
		MetricsServer:     "registry.k8s.io/metrics-server/metrics-server:" + MetricsVersion,
		Checkpointer:      checkpointer,
	}
}

// ProbeImage runs verify's short-lived DNS probe pod (it needs nslookup).
const ProbeImage = "docker.io/library/busybox:1.36"

// reference is the grammar of an image reference (the distribution project's):
// an optional registry host, a lowercase path, an optional tag and digest.
var reference = func() *regexp.Regexp {
	// A first component is a registry host only with a dot or a port, or as localhost.
	label := `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	host := `(?:localhost(?::[0-9]+)?|` + label + `(?:\.` + label + `)+(?::[0-9]+)?|` + label + `:[0-9]+)`
	path := `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	tag := `[\w][\w.-]{0,127}`
	digest := `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	return regexp.MustCompile(`^(?:` + host + `/)?` + path + `(?:/` + path + `)*(?::` + tag + `)?(?:@` + digest + `)?$`)
}()

// CheckReference says, as one sentence naming the flag, why ref is not an
// image reference, or returns nil.
func CheckReference(flag, ref string) error {
	if len(ref) > 255 || !reference.MatchString(ref) {
		return fmt.Errorf("%s %q is not an image reference (registry/path:tag or @sha256:digest)", flag, ref)
	}
	return nil
}
