package checkpointer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// httpAPI is a small JSON client for the five API calls the checkpointer
// makes. client-go's REST stack would work too, but it adds serializers and
// transports this daemon never uses, and every megabyte of binary shows up in
// its resident memory.
type httpAPI struct {
	server    string
	tokenFile string
	client    *http.Client
}

// NewClientAPI builds the API adapter on HTTPS with a bearer token. The
// token file is read on every request, so a rotated token is picked up.
func NewClientAPI(server, tokenFile, caFile, namespace, node, daemonSet string) (ClientAPI, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return ClientAPI{}, fmt.Errorf("cannot read the API server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return ClientAPI{}, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	h := &httpAPI{
		server:    strings.TrimSuffix(server, "/"),
		tokenFile: tokenFile,
		client: &http.Client{
			// Short, so that a dead API is noticed within one interval.
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     time.Minute,
			},
		},
	}
	core := "/api/v1/namespaces/" + url.PathEscape(namespace)
	apps := "/apis/apps/v1/namespaces/" + url.PathEscape(namespace)
	return ClientAPI{
		Pods:       httpPods{h, core + "/pods"},
		Secrets:    httpGetter[corev1.Secret]{h, core + "/secrets/"},
		ConfigMaps: httpConfigMaps{httpGetter[corev1.ConfigMap]{h, core + "/configmaps/"}},
		DaemonSets: httpGetter[appsv1.DaemonSet]{h, apps + "/daemonsets/"},
		Nodes:      httpGetter[corev1.Node]{h, "/api/v1/nodes/"},
		Namespace:  namespace, Node: node, DaemonSet: daemonSet,
	}, nil
}

// do sends one request and decodes the JSON answer into out. An error answer
// becomes an apierrors.StatusError, so apierrors.IsNotFound works on it.
func (h *httpAPI) do(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) error {
	u := h.server + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	token, err := os.ReadFile(h.tokenFile)
	if err != nil {
		return fmt.Errorf("cannot read the service account token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pod-checkpointer")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var st metav1.Status
		if json.Unmarshal(b, &st) != nil || st.Kind != "Status" {
			st = metav1.Status{Status: metav1.StatusFailure, Code: int32(resp.StatusCode), Message: strings.TrimSpace(string(b))}
			if resp.StatusCode == http.StatusNotFound {
				st.Reason = metav1.StatusReasonNotFound
			}
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s answered with something other than JSON: %w", method, path, err)
	}
	return nil
}

type httpPods struct {
	h    *httpAPI
	path string
}

func (p httpPods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	q := url.Values{}
	if opts.FieldSelector != "" {
		q.Set("fieldSelector", opts.FieldSelector)
	}
	if opts.LabelSelector != "" {
		q.Set("labelSelector", opts.LabelSelector)
	}
	out := &corev1.PodList{}
	return out, p.h.do(ctx, http.MethodGet, p.path, q, "", nil, out)
}

// httpGetter reads one kind of object by name under prefix.
type httpGetter[T any] struct {
	h      *httpAPI
	prefix string
}

func (g httpGetter[T]) Get(ctx context.Context, name string, _ metav1.GetOptions) (*T, error) {
	out := new(T)
	return out, g.h.do(ctx, http.MethodGet, g.prefix+url.PathEscape(name), nil, "", nil, out)
}

// httpConfigMaps also patches, for the status.
type httpConfigMaps struct{ httpGetter[corev1.ConfigMap] }

func (m httpConfigMaps) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, _ ...string) (*corev1.ConfigMap, error) {
	q := url.Values{}
	if opts.FieldManager != "" {
		q.Set("fieldManager", opts.FieldManager)
	}
	out := &corev1.ConfigMap{}
	return out, m.h.do(ctx, http.MethodPatch, m.prefix+url.PathEscape(name), q, string(pt), data, out)
}
