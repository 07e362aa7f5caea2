package checkpointer

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/restjson"
)

// NewClientAPI builds the API adapter on HTTPS with a bearer token.
func NewClientAPI(server, tokenFile, caFile, namespace, node, daemonSet string) (ClientAPI, error) {
	// Short, so that a dead API is noticed within one interval.
	h, err := restjson.New(server, tokenFile, caFile, "pod-checkpointer", 5*time.Second)
	if err != nil {
		return ClientAPI{}, err
	}
	core := "/api/v1/namespaces/" + url.PathEscape(namespace)
	apps := "/apis/apps/v1/namespaces/" + url.PathEscape(namespace)
	return ClientAPI{
		Pods:       httpPods{h, core + "/pods"},
		Secrets:    httpGetter[corev1.Secret]{h, core + "/secrets/"},
		ConfigMaps: httpConfigMaps{httpGetter[corev1.ConfigMap]{h, core + "/configmaps/"}},
		DaemonSets: httpGetter[appsv1.DaemonSet]{h, apps + "/daemonsets/"},
		Nodes:      httpGetter[corev1.Node]{h, "/api/v1/nodes/"},
		Tokens:     httpTokens{h, core + "/serviceaccounts/"},
		Namespace:  namespace, Node: node, DaemonSet: daemonSet,
	}, nil
}

type httpPods struct {
	h    *restjson.Client
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
	return out, p.h.Do(ctx, http.MethodGet, p.path, q, "", nil, out)
}

// httpGetter reads one kind of object by name under prefix.
type httpGetter[T any] struct {
	h      *restjson.Client
	prefix string
}

func (g httpGetter[T]) Get(ctx context.Context, name string, _ metav1.GetOptions) (*T, error) {
	out := new(T)
	return out, g.h.Do(ctx, http.MethodGet, g.prefix+url.PathEscape(name), nil, "", nil, out)
}

// httpConfigMaps also patches, for the status.
type httpConfigMaps struct{ httpGetter[corev1.ConfigMap] }

func (m httpConfigMaps) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, _ ...string) (*corev1.ConfigMap, error) {
	q := url.Values{}
	if opts.FieldManager != "" {
		q.Set("fieldManager", opts.FieldManager)
	}
	out := &corev1.ConfigMap{}
	return out, m.h.Do(ctx, http.MethodPatch, m.prefix+url.PathEscape(name), q, string(pt), data, out)
}

// httpTokens requests service-account tokens.
type httpTokens struct {
	h      *restjson.Client
	prefix string
}

func (t httpTokens) CreateToken(ctx context.Context, account string, tr *authenticationv1.TokenRequest, _ metav1.CreateOptions) (*authenticationv1.TokenRequest, error) {
	body, err := json.Marshal(tr)
	if err != nil {
		return nil, err
	}
	out := &authenticationv1.TokenRequest{}
	return out, t.h.Do(ctx, http.MethodPost, t.prefix+url.PathEscape(account)+"/token", nil, "application/json", body, out)
}
