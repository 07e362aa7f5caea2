package nodecreds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/atomicfile"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/restjson"
)

// Command is the name of the subcommand of the pod-checkpointer binary.
const Command = "node-credentials"

// Config is one run, read from the command line.
type Config struct {
	PKIDir       string
	Namespace    string
	Secret       string
	FieldManager string
	Plan         Plan
	Server       string
	TokenFile    string
	CAFile       string
	Timeout      time.Duration
	// Restore writes the Secret's items back to the files instead.
	Restore bool
}

// Store reads and writes the one Secret.
type Store interface {
	Get(ctx context.Context) (map[string][]byte, error)
	Apply(ctx context.Context, data map[string][]byte) error
}

// Run builds the Secret's data from the node's files and stores it. Its log
// line and its errors name files, keys and dates, never content.
func Run(ctx context.Context, c Config, store Store, log *slog.Logger, now time.Time) error {
	var stored map[string][]byte
	if err := retry(ctx, func() (err error) { stored, err = store.Get(ctx); return err }); err != nil {
		return err
	}
	read := func(path string) ([]byte, error) {
		if !filepath.IsLocal(path) {
			return nil, fmt.Errorf("%s is not under %s", path, c.PKIDir)
		}
		return os.ReadFile(filepath.Join(c.PKIDir, path))
	}
	data, reissued, err := Build(c.Plan, read, stored, now)
	if err != nil {
		return err
	}
	if err := retry(ctx, func() error { return store.Apply(ctx, data) }); err != nil {
		return err
	}
	log.Info("stored the API server's credentials", "secret", c.Namespace+"/"+c.Secret, "items", len(data), "reissued", reissued)
	return nil
}

// Restore writes each item of the Secret back to its file in the pki
// directory, 0600, replaced atomically and only when it differs: what a
// revert to static pods needs. It logs file names, never content.
func Restore(ctx context.Context, c Config, store Store, log *slog.Logger) error {
	var stored map[string][]byte
	if err := retry(ctx, func() (err error) { stored, err = store.Get(ctx); return err }); err != nil {
		return err
	}
	if stored == nil {
		return fmt.Errorf("Secret %s/%s does not exist", c.Namespace, c.Secret)
	}
	var written []string
	unchanged := 0
	for _, it := range c.Plan.Items {
		data, ok := stored[it.Key]
		if !ok {
			return fmt.Errorf("Secret %s/%s has no item %s", c.Namespace, c.Secret, it.Key)
		}
		if !filepath.IsLocal(it.Path) {
			return fmt.Errorf("%s is not under %s", it.Path, c.PKIDir)
		}
		path := filepath.Join(c.PKIDir, it.Path)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			unchanged++
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := atomicfile.Write(path, data, 0o600, 0, 0); err != nil {
			return err
		}
		written = append(written, it.Path)
	}
	log.Info("restored the API server's credentials", "secret", c.Namespace+"/"+c.Secret, "dir", c.PKIDir, "written", written, "unchanged", unchanged)
	return nil
}

// retry calls f until it succeeds, fails for good or ctx ends. A refusal
// is retried too: the grant made just before this pod started may not have
// reached every API server yet.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		var status apierrors.APIStatus
		if err == nil || errors.As(err, &status) && !retriable(status.Status().Code) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(2 * time.Second):
		}
	}
}

func retriable(code int32) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusTooManyRequests || code >= 500
}

// secretStore is Store over the API with the pod's short-lived token.
type secretStore struct {
	client       *restjson.Client
	path         string
	name         string
	namespace    string
	fieldManager string
}

func (s secretStore) Get(ctx context.Context) (map[string][]byte, error) {
	var secret corev1.Secret
	err := s.client.Do(ctx, http.MethodGet, s.path, nil, "", nil, &secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, sanitized(err, "read Secret "+s.namespace+"/"+s.name)
	}
	return secret.Data, nil
}

func (s secretStore) Apply(ctx context.Context, data map[string][]byte) error {
	body, err := json.Marshal(&corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: map[string]string{
			"app.kubernetes.io/managed-by": s.fieldManager, "component": "kube-apiserver",
		}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	})
	if err != nil {
		return err
	}
	q := url.Values{"fieldManager": {s.fieldManager}, "force": {"true"}}
	if err := s.client.Do(ctx, http.MethodPatch, s.path, q, "application/apply-patch+yaml", body, &corev1.Secret{}); err != nil {
		return sanitized(err, "store Secret "+s.namespace+"/"+s.name)
	}
	return nil
}

// sanitized keeps an API error's code and reason and drops its message:
// the message of a rejected write may quote the request, which holds keys.
func sanitized(err error, what string) error {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		st := status.Status()
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: st.Code, Reason: st.Reason,
			Message: fmt.Sprintf("cannot %s: the API server answered %d %s", what, st.Code, st.Reason)}}
	}
	return fmt.Errorf("cannot %s: %w", what, err) // a transport error names the URL, not the body
}

// Main is the subcommand: flags, then Run against the API.
func Main(args []string, log *slog.Logger) error {
	var c Config
	var items, dns, ips stringList
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	fs.StringVar(&c.PKIDir, "pki-dir", "/etc/kubernetes/pki", "kubeadm's pki directory on the node")
	fs.StringVar(&c.Namespace, "namespace", "kube-system", "namespace of the Secret")
	fs.StringVar(&c.Secret, "secret", "kube-apiserver", "name of the Secret")
	fs.StringVar(&c.FieldManager, "field-manager", "kubectl-selfhost", "server-side apply field manager")
	fs.Var(&items, "item", "KEY=PATH: store the file PATH of the pki directory under KEY (repeated)")
	fs.StringVar(&c.Plan.ServingCert, "serving-cert", "apiserver.crt", "key of the serving certificate, issued for every control-plane node")
	fs.StringVar(&c.Plan.CAKey, "serving-ca", "ca.crt", "key of the CA that signs the serving certificate")
	fs.Var(&dns, "serving-dns", "a DNS name the serving certificate must carry (repeated)")
	fs.Var(&ips, "serving-ip", "an IP address the serving certificate must carry (repeated)")
	fs.DurationVar(&c.Plan.RenewBefore, "renew-before", 30*24*time.Hour, "reissue a certificate this close to its expiry")
	fs.StringVar(&c.Server, "server", "", "API server URL (default: the in-cluster service)")
	fs.StringVar(&c.TokenFile, "token-file", "/var/run/secrets/kubernetes.io/serviceaccount/token", "short-lived service account token")
	fs.StringVar(&c.CAFile, "ca-file", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "CA bundle of the API server")
	fs.DurationVar(&c.Timeout, "request-timeout", 30*time.Second, "timeout of each API request")
	fs.BoolVar(&c.Restore, "restore", false, "write the Secret's items back to their files (0600) instead of storing the files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, it := range items {
		key, path, ok := strings.Cut(it, "=")
		if !ok || len(validation.IsConfigMapKey(key)) > 0 || !filepath.IsLocal(path) {
			return fmt.Errorf("--item %q is not KEY=PATH with a Secret key and a path inside the pki directory", it)
		}
		c.Plan.Items = append(c.Plan.Items, Item{Key: key, Path: path})
	}
	c.Plan.ServingDNS = dns
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--serving-ip %q is not an IP address", s)
		}
		c.Plan.ServingIPs = append(c.Plan.ServingIPs, ip)
	}
	if c.Server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return errors.New("--server is not set and this is not a pod (no KUBERNETES_SERVICE_HOST)")
		}
		c.Server = "https://" + net.JoinHostPort(host, port)
	}
	client, err := restjson.New(c.Server, c.TokenFile, c.CAFile, Command, c.Timeout)
	if err != nil {
		return err
	}
	store := secretStore{client: client, name: c.Secret, namespace: c.Namespace, fieldManager: c.FieldManager,
		path: "/api/v1/namespaces/" + url.PathEscape(c.Namespace) + "/secrets/" + url.PathEscape(c.Secret)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if c.Restore {
		return Restore(ctx, c, store, log)
	}
	return Run(ctx, c, store, log, time.Now())
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }
