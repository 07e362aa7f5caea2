package render

// The asset layout, bootkube's: everything render writes is named here.
const (
	AdminKubeconfig   = "auth/kubeconfig"
	KubeletKubeconfig = "auth/kubeconfig-kubelet"

	CACert                     = "tls/ca.crt"
	CAKey                      = "tls/ca.key"
	APIServerCert              = "tls/apiserver.crt"
	APIServerKey               = "tls/apiserver.key"
	APIServerKubeletClientCert = "tls/apiserver-kubelet-client.crt"
	APIServerKubeletClientKey  = "tls/apiserver-kubelet-client.key"
	FrontProxyCACert           = "tls/front-proxy-ca.crt"
	FrontProxyCAKey            = "tls/front-proxy-ca.key"
	FrontProxyClientCert       = "tls/front-proxy-client.crt"
	FrontProxyClientKey        = "tls/front-proxy-client.key"
	ServiceAccountKey          = "tls/service-account.key"
	ServiceAccountPub          = "tls/service-account.pub"
	EtcdCACert                 = "tls/etcd-client-ca.crt"
	EtcdCAKey                  = "tls/etcd-client-ca.key"
	EtcdClientCert             = "tls/etcd-client.crt"
	EtcdClientKey              = "tls/etcd-client.key"
	AdminCert                  = "tls/admin.crt"
	AdminKey                   = "tls/admin.key"

	// BootstrapManifestDir holds the temporary static pods of a fresh cluster;
	// ManifestDir holds what is applied through the API once it answers.
	BootstrapManifestDir = "bootstrap-manifests"
	ManifestDir          = "manifests"
)

// Modes: private keys and files that embed them are readable by the owner only.
const (
	PublicMode  = 0o644
	PrivateMode = 0o600
)

// The assets of a cluster started from scratch (kubectl selfhost start).
const (
	// EtcdDir holds one static pod per etcd member, <name>.yaml; the
	// member's certificates are under EtcdTLSDir/<name>/.
	EtcdDir    = "etcd"
	EtcdTLSDir = "tls/etcd"

	// KubeletDir holds the kubelet's configuration per role and its
	// systemd drop-in.
	KubeletControlPlaneConfig = "kubelet/config-control-plane.yaml"
	KubeletWorkerConfig       = "kubelet/config-worker.yaml"
	KubeletDropIn             = "kubelet/20-selfhost.conf"
)

// Where a node keeps what it is given, kubeadm's paths, so the kubelet
// packages' own drop-in finds them too.
const (
	NodeKubeletConfig          = "/var/lib/kubelet/config.yaml"
	NodeBootstrapKubeconfig    = "/etc/kubernetes/bootstrap-kubelet.conf"
	NodeKubeletKubeconfig      = "/etc/kubernetes/kubelet.conf"
	NodeCACert                 = "/etc/kubernetes/pki/ca.crt"
	NodeEtcdPKIDir             = "/etc/kubernetes/pki/etcd"
	NodeEtcdDataDir            = "/var/lib/etcd"
	NodeStaticPodDir           = "/etc/kubernetes/manifests"
	NodeKubeletDropInDirectory = "/etc/systemd/system/kubelet.service.d"
)

// EtcdManifest and EtcdMemberTLS name a member's assets.
func EtcdManifest(member string) string { return EtcdDir + "/" + member + ".yaml" }

func EtcdMemberTLS(member, file string) string { return EtcdTLSDir + "/" + member + "/" + file }
