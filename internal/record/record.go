// Package record keeps the recovery record: a copy of the kube-apiserver
// and pod-checkpointer DaemonSets in ConfigMap kube-system/selfhost-recovery.
// It outlives the DaemonSets themselves, so `kubectl selfhost recover` can
// read it from etcd after both were deleted and every API server went with
// them. A pod template holds no secret, only the names of Secrets.
package record

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
)

// Name is the record's ConfigMap in kube.Namespace.
const Name = "selfhost-recovery"

// DaemonSets are the recorded DaemonSets, each under the key <name>.yaml.
var DaemonSets = []string{"kube-apiserver", "pod-checkpointer"}

// Build reads the DaemonSets and returns the record that holds them.
func Build(ctx context.Context, client kubernetes.Interface) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: kube.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": ssa.FieldManager}},
		Data:       map[string]string{},
	}
	for _, name := range DaemonSets {
		ds, err := client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("cannot read DaemonSet %s/%s for the recovery record: %w", kube.Namespace, name, err)
		}
		b, err := yaml.Marshal(Clean(ds))
		if err != nil {
			return nil, err
		}
		cm.Data[name+".yaml"] = string(b)
	}
	return cm, nil
}

// Clean keeps what creates the DaemonSet again: its name, labels,
// annotations and spec.
func Clean(ds *appsv1.DaemonSet) *appsv1.DaemonSet {
	annotations := map[string]string{}
	for k, v := range ds.Annotations {
		if k != "deprecated.daemonset.template.generation" && k != corev1.LastAppliedConfigAnnotation {
			annotations[k] = v
		}
	}
	if len(annotations) == 0 {
		annotations = nil
	}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ds.Namespace, Labels: ds.Labels, Annotations: annotations},
		Spec:       *ds.Spec.DeepCopy(),
	}
}

// Held reports whether the record holds the DaemonSets as they are; with
// a DaemonSet missing there is nothing to hold yet.
func Held(ctx context.Context, client kubernetes.Interface) (bool, error) {
	want, err := Build(ctx, client)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	have, err := client.CoreV1().ConfigMaps(kube.Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read ConfigMap %s/%s: %w", kube.Namespace, Name, err)
	}
	for k, v := range want.Data {
		if have.Data[k] != v {
			return false, nil
		}
	}
	return true, nil
}

// Write stores the record of the DaemonSets as they are.
func Write(ctx context.Context, client kubernetes.Interface, d dynamic.Interface) error {
	cm, err := Build(ctx, client)
	if err != nil {
		return err
	}
	return ssa.ApplyTyped(ctx, d, cm)
}

// Decode returns the recorded DaemonSets by name.
func Decode(cm *corev1.ConfigMap) (map[string]*appsv1.DaemonSet, error) {
	out := map[string]*appsv1.DaemonSet{}
	for _, name := range DaemonSets {
		data, ok := cm.Data[name+".yaml"]
		if !ok {
			continue
		}
		ds := &appsv1.DaemonSet{}
		if err := yaml.UnmarshalStrict([]byte(data), ds); err != nil {
			return nil, fmt.Errorf("the recovery record's %s.yaml is not a DaemonSet: %w", name, err)
		}
		out[name] = ds
	}
	return out, nil
}
