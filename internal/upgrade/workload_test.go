package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func controlledBy(owner metav1.Object, kind string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: ptr.To(true)}}
}

// revisionData is a ControllerRevision's data as the DaemonSet controller
// writes it: a strategic merge patch replacing the template.
func revisionData(t *testing.T, tmpl corev1.PodTemplateSpec) runtime.RawExtension {
	b, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["$patch"] = "replace"
	raw, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
	return runtime.RawExtension{Raw: raw}
}

func withImage(image string) corev1.PodTemplateSpec {
	tmpl := apiServerTemplate()
	tmpl.Labels = map[string]string{"k8s-app": "kube-apiserver"}
	tmpl.Spec.Containers[0].Image = image
	return tmpl
}

// TestRevisionsFindThePreviousTemplate reads the history a rollback goes
// back to: a DaemonSet's ControllerRevisions (a reused one carries the
// highest number) and a Deployment's ReplicaSets, oldest first, others'
// entries left out.
func TestRevisionsFindThePreviousTemplate(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-apiserver"}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: "kube-system", UID: "ds-uid"}, Spec: appsv1.DaemonSetSpec{Selector: sel}}
	other := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "impostor", UID: "other-uid"}}
	cr := func(name, hash string, n int64, owner *appsv1.DaemonSet, image string) *appsv1.ControllerRevision {
		return &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", OwnerReferences: controlledBy(owner, "DaemonSet"),
				Labels: map[string]string{"k8s-app": "kube-apiserver", appsv1.ControllerRevisionHashLabelKey: hash}},
			Revision: n, Data: revisionData(t, withImage(image)),
		}
	}
	dsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-scheduler"}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler", Namespace: "kube-system", UID: "dep-uid"}, Spec: appsv1.DeploymentSpec{Selector: dsSel}}
	rs := func(hash, revision, image string) *appsv1.ReplicaSet {
		tmpl := withImage(image)
		tmpl.Labels = map[string]string{"k8s-app": "kube-scheduler", appsv1.DefaultDeploymentUniqueLabelKey: hash}
		return &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "kube-scheduler-" + hash, Namespace: "kube-system", OwnerReferences: controlledBy(dep, "Deployment"),
				Labels: tmpl.Labels, Annotations: map[string]string{"deployment.kubernetes.io/revision": revision}},
			Spec: appsv1.ReplicaSetSpec{Template: tmpl},
		}
	}
	client := fake.NewSimpleClientset(ds, dep,
		cr("kube-apiserver-aaa", "aaa", 4, ds, "apiserver:v1.36.3"), // reused by a rollback: the highest number is current
		cr("kube-apiserver-bbb", "bbb", 3, ds, "apiserver:v1.37.2"),
		cr("kube-apiserver-ccc", "ccc", 9, other, "apiserver:evil"),
		rs("r10", "10", "scheduler:v1.37.2"), rs("r9", "9", "scheduler:v1.36.3"))
	c := &Context{Client: client}
	ctx := context.Background()

	w, err := getWorkload(ctx, c, Components[0])
	if err != nil {
		t.Fatal(err)
	}
	revs, err := w.revisions(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs[1].hash != "aaa" || revs[0].hash != "bbb" || revs[0].template.Spec.Containers[0].Image != "apiserver:v1.37.2" {
		t.Errorf("DaemonSet revisions %+v", revs)
	}

	w, err = getWorkload(ctx, c, Components[2])
	if err != nil {
		t.Fatal(err)
	}
	revs, err = w.revisions(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs[0].number != 9 || revs[1].hash != "r10" {
		t.Fatalf("ReplicaSet revisions %+v", revs)
	}
	prev := revs[0].template
	if prev.Spec.Containers[0].Image != "scheduler:v1.36.3" {
		t.Errorf("previous image %s", prev.Spec.Containers[0].Image)
	}
	if _, ok := prev.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ok {
		t.Errorf("a rollback template keeps the ReplicaSet's hash label: %v", prev.Labels)
	}
}

// TestApplyMetaDropsWhatControllersWrite: applying them would pin stale values.
func TestApplyMetaDropsWhatControllersWrite(t *testing.T) {
	m := applyMeta(metav1.ObjectMeta{Name: "n", Namespace: "ns", UID: "u", ResourceVersion: "7", Annotations: map[string]string{
		"deployment.kubernetes.io/revision": "3", "deprecated.daemonset.template.generation": "2", Annotation: "{}",
	}})
	if m.UID != "" || m.ResourceVersion != "" || len(m.Annotations) != 1 || m.Annotations[Annotation] != "{}" {
		t.Errorf("%+v", m)
	}
}

// TestObserveCountsOnlyTheWorkloadsPods: an active checkpoint's mirror
// pod carries the DaemonSet's labels but no controller, and a deleted pod
// in its grace period is stopping, not running; neither is an old pod to
// replace.
func TestObserveCountsOnlyTheWorkloadsPods(t *testing.T) {
	labels := map[string]string{"k8s-app": "kube-apiserver"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: "kube-system", UID: "ds-uid", Generation: 2},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}}, Status: appsv1.DaemonSetStatus{ObservedGeneration: 2}}
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-new", Namespace: "kube-system", OwnerReferences: controlledBy(ds, "DaemonSet"),
			Labels: map[string]string{"k8s-app": "kube-apiserver", appsv1.ControllerRevisionHashLabelKey: "new"}},
		Revision: 2, Data: revisionData(t, withImage("apiserver:v1.37.2")),
	}
	pod := func(name, hash string, owned, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-apiserver"}}}
		if hash != "" {
			p.Labels[appsv1.ControllerRevisionHashLabelKey] = hash
		}
		if owned {
			p.OwnerReferences = controlledBy(ds, "DaemonSet")
		}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			p.Finalizers = []string{"test"} // the fake keeps a deleted object only with one
		}
		return p
	}
	client := fake.NewClientset(ds, cr,
		pod("kube-apiserver-a", "new", true, false),
		pod("kube-apiserver-b", "old", true, false),
		pod("kube-apiserver-c", "old", true, true),
		pod("kube-apiserver-b-cp2", "", false, false)) // a checkpoint's mirror pod
	c := &Context{Client: client}
	w, err := getWorkload(context.Background(), c, Components[0])
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.observe(context.Background(), c)
	if err != nil || r == nil {
		t.Fatalf("observe: %v %v", r, err)
	}
	var running, stopping []string
	for _, p := range r.pods {
		running = append(running, fmt.Sprintf("%s current=%v", p.Name, r.isCurrent(&p)))
	}
	for _, p := range r.stopping {
		stopping = append(stopping, p.Name)
	}
	if got := strings.Join(running, ", "); got != "kube-apiserver-a current=true, kube-apiserver-b current=false" {
		t.Errorf("running: %s", got)
	}
	if got := strings.Join(stopping, ", "); got != "kube-apiserver-c" {
		t.Errorf("stopping: %s", got)
	}
	ds.Generation = 3 // a spec the controller has not seen yet
	if w, _ = getWorkload(context.Background(), &Context{Client: fake.NewClientset(ds, cr)}, Components[0]); w != nil {
		if r, err := w.observe(context.Background(), c); r != nil || err != nil {
			t.Errorf("observe before the controller caught up: %v %v", r, err)
		}
	}
}
