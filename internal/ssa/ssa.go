// Package ssa applies manifests with server-side apply under one field
// manager, and tells whether the cluster already holds them.
package ssa

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// FieldManager owns every field this tool applies.
const FieldManager = "kubectl-selfhost"

// Decode splits multi-document YAML into objects.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			return nil, err
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}

func resourceFor(d dynamic.Interface, obj *unstructured.Unstructured) dynamic.ResourceInterface {
	gvr, _ := meta.UnsafeGuessKindToResource(obj.GroupVersionKind())
	if ns := obj.GetNamespace(); ns != "" {
		return d.Resource(gvr).Namespace(ns)
	}
	return d.Resource(gvr)
}

// ApplyTyped server-side applies a typed object (its TypeMeta must be set).
func ApplyTyped(ctx context.Context, d dynamic.Interface, obj runtime.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return Apply(ctx, d, u)
}

// Apply server-side applies objects. Force takes ownership of fields another
// manager set, which is how kubeadm's objects are adopted.
func Apply(ctx context.Context, d dynamic.Interface, objs ...*unstructured.Unstructured) error {
	for _, obj := range objs {
		_, err := resourceFor(d, obj).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("cannot apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// Holds reports whether the cluster already holds every object as applying
// it would leave it: a server-side dry-run apply of each changes nothing but
// who manages which field. A newer plugin's changed manifest is not held.
func Holds(ctx context.Context, d dynamic.Interface, objs ...*unstructured.Unstructured) (bool, error) {
	for _, obj := range objs {
		r := resourceFor(d, obj)
		live, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("cannot read %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		applied, err := r.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, fmt.Errorf("cannot dry-run apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		if !sameContent(live, applied) {
			return false, nil
		}
	}
	return true, nil
}

// sameContent compares two versions of an object, leaving out what an apply
// that changes nothing may still touch, and the status, which controllers
// may write between the two reads.
func sameContent(a, b *unstructured.Unstructured) bool {
	content := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
		unstructured.RemoveNestedField(c.Object, "metadata", "resourceVersion")
		unstructured.RemoveNestedField(c.Object, "status")
		return c.Object
	}
	return equality.Semantic.DeepEqual(content(a), content(b))
}

// Exists reports whether the cluster holds an object of obj's kind and name.
func Exists(ctx context.Context, d dynamic.Interface, obj *unstructured.Unstructured) (bool, error) {
	_, err := resourceFor(d, obj).Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return true, nil
}

// Delete deletes the object of obj's kind and name; one already gone is fine.
func Delete(ctx context.Context, d dynamic.Interface, obj *unstructured.Unstructured) error {
	err := resourceFor(d, obj).Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot delete %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}
