package recovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// Etcd reads keys through etcd's JSON gateway (POST /v3/kv/range), on by
// default on every etcd client port, with a client certificate: no etcd
// client library, and nothing is ever written.
type Etcd struct {
	Endpoint string
	client   *http.Client
}

// NewEtcd reads the CA and the client certificate and key.
func NewEtcd(endpoint, caFile, certFile, keyFile string, timeout time.Duration) (*Etcd, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read etcd's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load the etcd client certificate %s: %w", certFile, err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	return &Etcd{Endpoint: strings.TrimSuffix(endpoint, "/"), client: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// Get returns the value stored at key, and whether there is one.
func (e *Etcd) Get(ctx context.Context, key string) ([]byte, bool, error) {
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.Endpoint+"/v3/kv/range", bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s from etcd at %s: %w", key, e.Endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s from etcd at %s: %w", key, e.Endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("etcd at %s answered %s to a read of %s", e.Endpoint, resp.Status, key)
	}
	var out struct {
		KVs []struct {
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, false, fmt.Errorf("etcd at %s answered a read of %s with something other than JSON: %w", e.Endpoint, key, err)
	}
	if len(out.KVs) == 0 {
		return nil, false, nil
	}
	value, err := base64.StdEncoding.DecodeString(out.KVs[0].Value)
	return value, err == nil, err
}

// encryptedPrefix starts a value that an encryption provider wrote:
// k8s:enc:<provider>:v1:<key name>:...
const encryptedPrefix = "k8s:enc:"

var codecs = serializer.NewCodecFactory(scheme.Scheme)

// decode reads an object as kube-apiserver stored it (protobuf or JSON).
// Encrypted data is refused by name: recover holds no key to read it.
func decode(key string, value []byte, into runtime.Object) error {
	if rest, ok := bytes.CutPrefix(value, []byte(encryptedPrefix)); ok {
		provider, _, _ := strings.Cut(string(rest[:min(len(rest), 32)]), ":")
		return fmt.Errorf("%s is encrypted at rest by the %s provider, which recover cannot read; recover needs the API server's Secrets and ConfigMaps stored unencrypted", key, provider)
	}
	if _, _, err := codecs.UniversalDeserializer().Decode(value, nil, into); err != nil {
		return fmt.Errorf("cannot decode %s: %w", key, err)
	}
	return nil
}
