package checkpointer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/utils/ptr"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"strings"

	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// API is what the checkpointer needs from the API server.
type API interface {
	// ParentPods lists the pods on this node that ask for a checkpoint. An
	// error means the API is down, as far as the state machine is concerned.
	ParentPods(ctx context.Context) ([]corev1.Pod, error)
	// VolumeData returns the content of a Secret or ConfigMap; found is false
	// when it does not exist.
	VolumeData(ctx context.Context, kind, name string) (data map[string][]byte, found bool, err error)
	// ServiceAccountToken requests a token of a service account that lives
	// for lifetime.
	ServiceAccountToken(ctx context.Context, account, audience string, lifetime time.Duration) ([]byte, error)
	// DaemonSetGone reports whether the checkpointer's DaemonSet is deleted or being deleted.
	DaemonSetGone(ctx context.Context) (bool, error)
	// OwnerWantsNode reports whether a parent's controller (Kind/name) is a
	// DaemonSet that exists, is not being deleted, and targets this node.
	OwnerWantsNode(ctx context.Context, owner string) (bool, error)
	PublishStatus(ctx context.Context, st checkpoint.NodeStatus) error
}

// The clients below are the few methods of client-go's typed clients that
// the checkpointer calls. The typed clients of a kubernetes.Interface satisfy
// them, and so does the small REST client in restclient.go: linking the full
// clientset would double the binary.
type (
	PodLister interface {
		List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	}
	SecretGetter interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	}
	ConfigMapClient interface {
		checkpoint.ConfigMapGetter
		Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.ConfigMap, error)
	}
	DaemonSetGetter interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*appsv1.DaemonSet, error)
	}
	NodeGetter interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error)
	}
	TokenCreator interface {
		CreateToken(ctx context.Context, account string, tr *authenticationv1.TokenRequest, opts metav1.CreateOptions) (*authenticationv1.TokenRequest, error)
	}
)

// ClientAPI implements API within one namespace.
type ClientAPI struct {
	Pods       PodLister
	Secrets    SecretGetter
	ConfigMaps ConfigMapClient
	DaemonSets DaemonSetGetter
	Nodes      NodeGetter
	Tokens     TokenCreator // of the namespace's service accounts
	Namespace  string
	Node       string
	DaemonSet  string
}

func (a ClientAPI) ParentPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := a.Pods.List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", a.Node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list pods of node %s: %w", a.Node, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Spec.NodeName == a.Node && checkpoint.WantsCheckpoint(&p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (a ClientAPI) VolumeData(ctx context.Context, kind, name string) (map[string][]byte, bool, error) {
	switch kind {
	case "Secret":
		s, err := a.Secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("cannot read secret %s/%s: %w", a.Namespace, name, err)
		}
		return s.Data, true, nil
	case "ConfigMap":
		c, err := a.ConfigMaps.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("cannot read configMap %s/%s: %w", a.Namespace, name, err)
		}
		data := make(map[string][]byte, len(c.Data)+len(c.BinaryData))
		for k, v := range c.Data {
			data[k] = []byte(v)
		}
		for k, v := range c.BinaryData {
			data[k] = v
		}
		return data, true, nil
	}
	return nil, false, fmt.Errorf("cannot copy a volume of kind %s", kind)
}

func (a ClientAPI) ServiceAccountToken(ctx context.Context, account, audience string, lifetime time.Duration) ([]byte, error) {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(lifetime.Seconds()))}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	out, err := a.Tokens.CreateToken(ctx, account, tr, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot request a token of service account %s/%s: %w", a.Namespace, account, err)
	}
	if out.Status.Token == "" {
		return nil, fmt.Errorf("the token request of service account %s/%s came back empty", a.Namespace, account)
	}
	return []byte(out.Status.Token), nil
}

func (a ClientAPI) DaemonSetGone(ctx context.Context) (bool, error) {
	ds, err := a.DaemonSets.Get(ctx, a.DaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read DaemonSet %s/%s: %w", a.Namespace, a.DaemonSet, err)
	}
	return ds.DeletionTimestamp != nil, nil
}

// OwnerWantsNode reads the owner DaemonSet and this node. The checkpointer
// may read only the DaemonSets its Role names: an owner it may not read is
// not known to want the node, and its checkpoint follows the API as before.
func (a ClientAPI) OwnerWantsNode(ctx context.Context, owner string) (bool, error) {
	kind, name, _ := strings.Cut(owner, "/")
	if kind != "DaemonSet" || name == "" {
		return false, nil
	}
	ds, err := a.DaemonSets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read DaemonSet %s/%s: %w", a.Namespace, name, err)
	}
	if ds.DeletionTimestamp != nil {
		return false, nil
	}
	node, err := a.Nodes.Get(ctx, a.Node, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("cannot read node %s: %w", a.Node, err)
	}
	return targets(&ds.Spec.Template, node)
}

// targets reports whether a DaemonSet with this pod template runs a pod on
// node, as its controller decides: the node matches the template's node
// selector and required affinity, and the template tolerates the node's
// NoSchedule and NoExecute taints.
func targets(tmpl *corev1.PodTemplateSpec, node *corev1.Node) (bool, error) {
	pod := &corev1.Pod{Spec: tmpl.Spec}
	match, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)
	if err != nil || !match {
		return false, err
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, tmpl.Spec.Tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, false)
	return !untolerated, nil
}

// PublishStatus merge-patches this node's key only, so nodes never conflict.
func (a ClientAPI) PublishStatus(ctx context.Context, st checkpoint.NodeStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{a.Node: string(raw)}})
	if err != nil {
		return err
	}
	_, err = a.ConfigMaps.Patch(ctx, checkpoint.StatusConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: checkpoint.StatusManager(a.Node)})
	if err != nil {
		return fmt.Errorf("cannot publish status to ConfigMap %s/%s: %w", a.Namespace, checkpoint.StatusConfigMap, err)
	}
	return nil
}

// ClearStatus removes this node's entry from the status ConfigMap.
func (a ClientAPI) ClearStatus(ctx context.Context) error {
	patch, err := json.Marshal(map[string]any{"data": map[string]any{a.Node: nil}})
	if err != nil {
		return err
	}
	_, err = a.ConfigMaps.Patch(ctx, checkpoint.StatusConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: checkpoint.StatusManager(a.Node)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot clear status in ConfigMap %s/%s: %w", a.Namespace, checkpoint.StatusConfigMap, err)
	}
	return nil
}
