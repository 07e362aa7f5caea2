package pivot

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

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
