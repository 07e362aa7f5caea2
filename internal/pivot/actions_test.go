package pivot

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
)

// A rerun after every static pod is gone (say, after pod-checkpointer was
// deleted and its checkpoints with it) waits for the workload it finds
// instead of failing for want of a static pod to copy.
func TestCreateWorkloadWithNoStaticPodLeft(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"the DaemonSet exists", []runtime.Object{&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: kube.Namespace}}},
			"context deadline exceeded"},
		{"nothing to copy and no DaemonSet", nil, "no static kube-apiserver is left to copy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objs...)
			c := &Context{Client: client, Cluster: &Cluster{ControlPlane: []string{"cp1"}}, step: progress.NewStatus(io.Discard, false).Start("test")}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := (&createWorkload{component: "kube-apiserver"}).Execute(ctx, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			for _, a := range client.Actions() {
				if v := a.GetVerb(); v != "get" && v != "list" {
					t.Errorf("it wrote: %s %s", v, a.GetResource().Resource)
				}
			}
		})
	}
}

// blockingAction is done once executed; it waits on release.
type blockingAction struct {
	name    string
	started chan struct{}
	release chan struct{}
	err     error
	done    bool
}

func (a *blockingAction) Name() string { return a.name }
func (a *blockingAction) Done(context.Context, *Context) (bool, error) {
	return a.done, nil
}
func (a *blockingAction) Execute(context.Context, *Context) error {
	close(a.started)
	<-a.release
	a.done = a.err == nil
	return a.err
}

func TestTogetherRunsItsActionsAtOnce(t *testing.T) {
	newAction := func(name string, err error) *blockingAction {
		return &blockingAction{name: name, started: make(chan struct{}), release: make(chan struct{}), err: err}
	}
	a, b := newAction("scheduler on cp1", nil), newAction("controller-manager on cp2", errors.New("no mirror pod"))
	skipped := &blockingAction{name: "already", done: true}
	g := &together{name: "both", actions: []Action{a, skipped, b}}
	result := make(chan error)
	go func() { result <- g.Execute(context.Background(), &Context{}) }()
	for _, x := range []*blockingAction{a, b} {
		select {
		case <-x.started: // both started before either was released
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not start while the other ran", x.name)
		}
	}
	close(a.release)
	close(b.release)
	err := <-result
	if err == nil || !strings.Contains(err.Error(), "controller-manager on cp2: no mirror pod") {
		t.Fatalf("err = %v", err)
	}
	if done, _ := g.Done(context.Background(), &Context{}); done {
		t.Error("done while one action failed")
	}
	b.err, b.done = nil, true
	if done, _ := g.Done(context.Background(), &Context{}); !done {
		t.Error("not done when every action is")
	}
}

func TestEachNodeSharesItsPortsInOnePassAndOnlyTheAPIServerGoesNodeByNode(t *testing.T) {
	c := &Cluster{ControlPlane: []string{"cp1", "cp2", "cp3"}}
	var names []string
	for _, a := range Actions(c, Options{Certs: CertsSecret}) {
		names = append(names, a.Name())
	}
	want := []string{
		"Letting static kube-apiserver, kube-controller-manager, kube-scheduler on cp1 share their ports",
		"Letting static kube-apiserver, kube-controller-manager, kube-scheduler on cp2 share their ports",
		"Letting static kube-apiserver, kube-controller-manager, kube-scheduler on cp3 share their ports",
		"Storing the API server's credentials in Secret kube-system/kube-apiserver", "Running kube-apiserver as a DaemonSet",
		"Removing static kube-apiserver from cp1", "Removing static kube-apiserver from cp2", "Removing static kube-apiserver from cp3",
		"Running kube-controller-manager and kube-scheduler as Deployments",
		"Removing static kube-controller-manager and kube-scheduler from every node",
		"Installing add-ons",
	}
	if got := names[2 : len(names)-1]; !slices.Equal(got, want) {
		t.Errorf("actions:\n%s", strings.Join(got, "\n"))
	}
	// The record follows the add-ons, which may change nothing it holds,
	// so that it holds the DaemonSets as the pivot leaves them.
	if last := names[len(names)-1]; last != "Recording the API server and checkpointer DaemonSets for recover" {
		t.Errorf("the last action is %q", last)
	}
}

// mirror is a static pod's mirror on cp1, of the manifest with hash.
func mirror(uid, hash string, sharing bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "kube-controller-manager-cp1", Namespace: kube.Namespace, UID: types.UID(uid),
		Labels:      map[string]string{"tier": "control-plane", "component": "kube-controller-manager"},
		Annotations: map[string]string{"kubernetes.io/config.mirror": hash, configHashAnnotation: hash, "kubernetes.io/config.source": "file"},
	}, Spec: corev1.PodSpec{NodeName: "cp1", Containers: []corev1.Container{{Name: "kube-controller-manager", Command: []string{"kube-controller-manager"}}}},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	if sharing {
		p.Spec.Containers[0].Command = append(p.Spec.Containers[0].Command, PortSharingFlag)
	}
	return p
}

// A kubelet that could not replace a mirror pod while its API server was
// down leaves the stale one until its next sync of the static pod, up to
// 90 s later. Deleting the stale mirror pod makes it sync: here the fake
// kubelet syncs only on that deletion, so the wait ends only if it comes.
func TestAwaitSharingDeletesTheStaleMirrorPodOnce(t *testing.T) {
	old := mirror("uid-old", "kubeadmhash", false)
	client := fake.NewClientset(old.DeepCopy())
	var deletes []string
	client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		deletes = append(deletes, d.Name+" uid "+string(*d.DeleteOptions.Preconditions.UID))
		tracker := client.Tracker()
		if err := tracker.Delete(corev1.SchemeGroupVersion.WithResource("pods"), kube.Namespace, d.Name); err != nil {
			return true, nil, err
		}
		return true, nil, tracker.Create(corev1.SchemeGroupVersion.WithResource("pods"), mirror("uid-new", "sharinghash", true), kube.Namespace)
	})
	c := &Context{Client: client, Cluster: &Cluster{ControlPlane: []string{"cp1"}}, step: progress.NewStatus(io.Discard, false).Start("test")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := awaitSharing(ctx, c, "kube-controller-manager", "cp1", old); err != nil {
		t.Fatal(err)
	}
	if len(deletes) != 1 || deletes[0] != "kube-controller-manager-cp1 uid uid-old" {
		t.Errorf("deletes %v, want the stale mirror pod once, by its UID", deletes)
	}

	// A mirror pod of the new manifest that is not Ready yet is left alone.
	deletes = nil
	fresh := mirror("uid-new", "sharinghash", true)
	fresh.Status.Conditions = nil
	client = fake.NewClientset(fresh)
	c.Client = client
	short, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := awaitSharing(short, c, "kube-controller-manager", "cp1", old); err == nil {
		t.Error("a mirror pod that is not Ready ended the wait")
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "delete" {
			t.Errorf("deleted the new mirror pod")
		}
	}
}
