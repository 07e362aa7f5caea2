package record

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func daemonSet(name, image string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", UID: "u", ResourceVersion: "9", Generation: 3,
			Annotations: map[string]string{"deprecated.daemonset.template.generation": "3", "note": "kept"}},
		Spec:   appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}}}},
		Status: appsv1.DaemonSetStatus{NumberReady: 3},
	}
}

// The record holds what creates each DaemonSet again, and nothing the API
// server or a controller wrote; a change to a DaemonSet makes it stale.
func TestRecordHoldsTheDaemonSetsAsTheyAre(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(daemonSet("kube-apiserver", "kube-apiserver:v1.37.2"))
	if held, err := Held(ctx, client); held || err != nil {
		t.Fatalf("with pod-checkpointer missing: held=%v err=%v, want false and no error", held, err)
	}
	client = fake.NewClientset(daemonSet("kube-apiserver", "kube-apiserver:v1.37.2"), daemonSet("pod-checkpointer", "pod-checkpointer:v0.1.0"))
	cm, err := Build(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ConfigMaps("kube-system").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if held, err := Held(ctx, client); !held || err != nil {
		t.Fatalf("held=%v err=%v after it was written", held, err)
	}
	got, err := Decode(cm)
	if err != nil {
		t.Fatal(err)
	}
	ds := got["kube-apiserver"]
	if ds.UID != "" || ds.ResourceVersion != "" || ds.Generation != 0 || ds.Status.NumberReady != 0 ||
		ds.Annotations["deprecated.daemonset.template.generation"] != "" || ds.Annotations["note"] != "kept" ||
		ds.Spec.Template.Spec.Containers[0].Image != "kube-apiserver:v1.37.2" || got["pod-checkpointer"] == nil {
		t.Errorf("recorded %+v", ds)
	}
	if _, err := client.AppsV1().DaemonSets("kube-system").Update(ctx, daemonSet("kube-apiserver", "kube-apiserver:v1.37.3"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if held, _ := Held(ctx, client); held {
		t.Error("a changed DaemonSet is still held")
	}
}
