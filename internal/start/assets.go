package start

import (
	"crypto/x509"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/render"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
)

// Assets is what start reads from render's asset directory, once.
type Assets struct {
	Dir   string
	Admin *rest.Config
	// EtcdServers are the bootstrap API server's --etcd-servers.
	EtcdServers []string
	// ControlPlane names the control-plane nodes: the etcd members when
	// render made them, else none beyond this host.
	ControlPlane []string
	// Secrets are the bootstrap pods' credentials, by file name.
	Secrets map[string][]byte
	// BootstrapPods are the temporary static pods, by file name.
	BootstrapPods map[string][]byte
	// Waves are manifests/ in dependency order: namespaces; identities
	// and RBAC; Secrets and ConfigMaps; workloads and the rest.
	Waves [][]*unstructured.Unstructured
}

// LoadAssets reads and decodes the asset directory; a missing or broken
// file is named in one sentence.
func LoadAssets(dir string) (*Assets, error) {
	a := &Assets{Dir: dir, Secrets: map[string][]byte{}, BootstrapPods: map[string][]byte{}}
	read := func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("the asset directory %s lacks %s; render it again", dir, name)
		}
		return data, nil
	}
	kubeconfig, err := read(render.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	if a.Admin, err = clientcmd.RESTConfigFromKubeConfig(kubeconfig); err != nil {
		return nil, fmt.Errorf("%s is not a kubeconfig: %w", render.AdminKubeconfig, err)
	}
	a.Secrets["kubeconfig"] = kubeconfig
	for _, name := range []string{render.CACert, render.CAKey, render.APIServerCert, render.APIServerKey,
		render.APIServerKubeletClientCert, render.APIServerKubeletClientKey, render.FrontProxyCACert,
		render.FrontProxyClientCert, render.FrontProxyClientKey, render.EtcdCACert, render.EtcdClientCert,
		render.EtcdClientKey, render.ServiceAccountKey, render.ServiceAccountPub} {
		data, err := read(name)
		if err != nil {
			return nil, err
		}
		a.Secrets[filepath.Base(name)] = data
	}
	for _, name := range []string{"bootstrap-apiserver.yaml", "bootstrap-controller-manager.yaml", "bootstrap-scheduler.yaml"} {
		data, err := read(filepath.Join(render.BootstrapManifestDir, name))
		if err != nil {
			return nil, err
		}
		a.BootstrapPods[name] = data
	}
	if a.EtcdServers, err = etcdServersOf(a.BootstrapPods["bootstrap-apiserver.yaml"]); err != nil {
		return nil, err
	}
	members, _ := filepath.Glob(filepath.Join(dir, render.EtcdDir, "*.yaml"))
	for _, m := range members {
		a.ControlPlane = append(a.ControlPlane, strings.TrimSuffix(filepath.Base(m), ".yaml"))
	}
	if a.Waves, err = decodeManifests(dir); err != nil {
		return nil, err
	}
	return a, nil
}

// asset is a file of tls/ as the bootstrap pods get it, by its asset name.
func (a *Assets) asset(name string) []byte { return a.Secrets[filepath.Base(name)] }

// etcdServersOf reads --etcd-servers from the bootstrap API server's pod.
func etcdServersOf(manifest []byte) ([]string, error) {
	var pod corev1.Pod
	if err := yaml.Unmarshal(manifest, &pod); err != nil || len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("%s/bootstrap-apiserver.yaml is not a pod: %v", render.BootstrapManifestDir, err)
	}
	for _, arg := range pod.Spec.Containers[0].Command {
		if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
			return strings.Split(v, ","), nil
		}
	}
	return nil, fmt.Errorf("%s/bootstrap-apiserver.yaml has no --etcd-servers", render.BootstrapManifestDir)
}

// wave orders kinds: what others refer to goes first.
func wave(kind string) int {
	switch kind {
	case "Namespace", "CustomResourceDefinition", "PriorityClass":
		return 0
	case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
		return 1
	case "Secret", "ConfigMap":
		return 2
	}
	return 3
}

func decodeManifests(dir string) ([][]*unstructured.Unstructured, error) {
	files, err := fs.Glob(os.DirFS(dir), render.ManifestDir+"/*.yaml")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("the asset directory %s has no %s/; render it again", dir, render.ManifestDir)
	}
	slices.Sort(files)
	waves := make([][]*unstructured.Unstructured, 4)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		objs, err := ssa.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range objs {
			w := wave(o.GetKind())
			waves[w] = append(waves[w], o)
		}
	}
	return waves, nil
}

// checkCertificates verifies that each certificate chains to the CA that
// must sign it and that the API server's names this host.
func (a *Assets) checkCertificates(hostNames []string) error {
	chains := map[string]string{
		render.APIServerCert: render.CACert, render.APIServerKubeletClientCert: render.CACert,
		render.FrontProxyClientCert: render.FrontProxyCACert, render.EtcdClientCert: render.EtcdCACert,
	}
	for leafName, caName := range chains {
		leaf, err := pki.ParseCert(a.asset(leafName))
		if err != nil {
			return fmt.Errorf("%s: %w", leafName, err)
		}
		ca, err := pki.ParseCert(a.asset(caName))
		if err != nil {
			return fmt.Errorf("%s: %w", caName, err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%s is not signed by %s: %v; render the assets again", leafName, caName, err)
		}
		key := strings.TrimSuffix(leafName, ".crt") + ".key"
		if _, err := pki.ParsePair(a.asset(leafName), a.asset(key)); err != nil {
			return fmt.Errorf("%s does not belong to %s: %v", key, leafName, err)
		}
	}
	serving, _ := pki.ParseCert(a.asset(render.APIServerCert))
	for _, h := range hostNames {
		if serving.VerifyHostname(h) == nil {
			return nil
		}
	}
	return fmt.Errorf("the API server certificate names none of this host's names and addresses (%s); render with --etcd-members or --api-server-alt-names that include it",
		strings.Join(hostNames, ", "))
}

// superAdminValidity bounds start's own credential: it lives only in memory.
const superAdminValidity = 2 * time.Hour

// superAdmin is a client config for the assets' endpoint with a fresh
// system:masters certificate signed by the cluster CA.
func (a *Assets) superAdmin() (*rest.Config, error) {
	ca, err := pki.ParseCA(a.asset(render.CACert), a.asset(render.CAKey))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", render.CAKey, err)
	}
	kp, err := ca.Issue(pki.KeyAlgorithmOf(ca.Key), pki.CertConfig{CommonName: "kubectl-selfhost-start", Organization: []string{"system:masters"},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: superAdminValidity}, time.Now())
	if err != nil {
		return nil, err
	}
	key, err := pki.EncodeKey(kp.Key)
	if err != nil {
		return nil, err
	}
	cfg := rest.AnonymousClientConfig(a.Admin)
	cfg.CertData, cfg.KeyData = pki.EncodeCert(kp.Cert), key
	return cfg, nil
}
