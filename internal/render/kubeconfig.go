package render

import (
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

func (a *assetList) addKubeconfigs(c *Config, certs *clientCerts) error {
	for _, k := range []struct {
		name, user string
		kp         *pki.KeyPair
	}{
		{AdminKubeconfig, "kubernetes-admin", certs.admin},
		{KubeletKubeconfig, "kubelet-bootstrap", certs.kubelet},
	} {
		data, err := kubeconfig(c.APIServers[0].String(), k.user, certs.ca, k.kp)
		if err != nil {
			return err
		}
		a.add(k.name, data, PrivateMode) // it embeds a private key
	}
	return nil
}

func kubeconfig(server, user string, ca, client *pki.KeyPair) ([]byte, error) {
	key, err := pki.EncodeKey(client.Key)
	if err != nil {
		return nil, err
	}
	const cluster = "kubernetes"
	ctx := user + "@" + cluster
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{cluster: {
			Server:                   server,
			CertificateAuthorityData: pki.EncodeCert(ca.Cert),
		}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{user: {
			ClientCertificateData: pki.EncodeCert(client.Cert),
			ClientKeyData:         key,
		}},
		Contexts:       map[string]*clientcmdapi.Context{ctx: {Cluster: cluster, AuthInfo: user}},
		CurrentContext: ctx,
	}
	return clientcmd.Write(cfg)
}
