package pivot

import (
	"context"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
)

// Each node gets its static pods before it leaves the DaemonSet, one node
// at a time; only then do the workloads, the checkpointer and the Secret go.
func TestRevertGoesNodeByNodeStaticFirst(t *testing.T) {
	var names []string
	for _, a := range RevertActions(&Cluster{ControlPlane: []string{"cp1", "cp2"}}) {
		names = append(names, a.Name())
	}
	want := []string{
		"Keeping each API server pod until its node runs a static one",
		"Starting static kube-apiserver, kube-controller-manager, kube-scheduler on cp1 from the self-hosted specs",
		"Taking cp1 out of the kube-apiserver DaemonSet",
		"Starting static kube-apiserver, kube-controller-manager, kube-scheduler on cp2 from the self-hosted specs",
		"Taking cp2 out of the kube-apiserver DaemonSet",
		"Deleting the kube-apiserver DaemonSet and the kube-controller-manager and kube-scheduler Deployments",
		"Removing pod-checkpointer and every checkpoint",
		"Removing Secret kube-system/kube-apiserver, the recovery record and the nodes' selfhost.dev/static-control-plane label",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("revert's steps:\n%s", strings.Join(names, "\n"))
	}
}

// Holding the DaemonSet replaces no pod (OnDelete) and lets it leave only
// the nodes that carry StaticLabel.
func TestHoldAPIServerPods(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Namespace: kube.Namespace},
		Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: &appsv1.RollingUpdateDaemonSet{}}}}
	client := fake.NewClientset(ds)
	c := &Context{Client: client, Cluster: &Cluster{ControlPlane: []string{"cp1"}}, step: progress.NewStatus(io.Discard, false).Start("test")}
	a := &holdAPIServerPods{}
	ctx := context.Background()
	if done, err := a.Done(ctx, c); done || err != nil {
		t.Fatalf("done before it ran: %v %v", done, err)
	}
	if err := a.Execute(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, _ := client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if got.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType || got.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Errorf("update strategy %+v", got.Spec.UpdateStrategy)
	}
	terms := got.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != StaticLabel || terms[0].MatchExpressions[0].Operator != corev1.NodeSelectorOpDoesNotExist {
		t.Errorf("node affinity %+v", terms)
	}
	if done, err := a.Done(ctx, c); !done || err != nil {
		t.Errorf("not done after it ran: %v %v", done, err)
	}
}

// revert writes back only Secret kube-apiserver at kubeadm's pki
// directory, where the static pod's unchanged flags look.
func TestRestoreCredentialsRefusesAnotherLayout(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "kube-apiserver", VolumeMounts: []corev1.VolumeMount{{Name: "certs", MountPath: "/etc/kubernetes/secrets"}}}},
		Volumes:    []corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kube-apiserver"}}}},
	}}
	client := fake.NewClientset()
	c := &Context{Client: client, step: progress.NewStatus(io.Discard, false).Start("test")}
	err := restoreCredentials(context.Background(), c, "cp1", tmpl)
	if err == nil || !strings.Contains(err.Error(), "mounts Secret kube-apiserver at /etc/kubernetes/secrets") {
		t.Errorf("got %v", err)
	}
	if len(client.Actions()) != 0 {
		t.Errorf("it acted: %v", client.Actions())
	}
}
