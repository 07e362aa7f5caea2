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
	KubeletCert                = "tls/kubelet.crt"
	KubeletKey                 = "tls/kubelet.key"
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
