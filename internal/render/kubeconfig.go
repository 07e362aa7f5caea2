package render

import (
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

func (a *assetList) addKubeconfigs(c *Config, certs *clientCerts, token BootstrapToken) error {
	key, err := pki.EncodeKey(certs.admin.Key)
	if err != nil {
		return err
	}
	server := c.APIServers[0].String()
	admin, err := kubeconfig(server, "kubernetes-admin", certs.ca, &clientcmdapi.AuthInfo{ClientCertificateData: pki.EncodeCert(certs.admin.Cert), ClientKeyData: key})
	if err != nil {
		return err
	}
	kubelet, err := kubeconfig(server, "kubelet-bootstrap", certs.ca, &clientcmdapi.AuthInfo{Token: token.String()})
	if err != nil {
		return err
	}
	a.add(AdminKubeconfig, admin, PrivateMode)     // it embeds a private key
	a.add(KubeletKubeconfig, kubelet, PrivateMode) // and this a token
	return nil
}

func kubeconfig(server, user string, ca *pki.KeyPair, auth *clientcmdapi.AuthInfo) ([]byte, error) {
	const cluster = "kubernetes"
	ctx := user + "@" + cluster
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{cluster: {
			Server:                   server,
			CertificateAuthorityData: pki.EncodeCert(ca.Cert),
		}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: auth},
		Contexts:       map[string]*clientcmdapi.Context{ctx: {Cluster: cluster, AuthInfo: user}},
		CurrentContext: ctx,
	}
	return clientcmd.Write(cfg)
}
