package cmd

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
)

func TestVerifyDrillFlagsAreCheckedFirst(t *testing.T) {
	for args, want := range map[string]string{
		"--drill etcd":                          `--drill "etcd" is not a drill: the one drill is apiserver`,
		"--drill apiserver --max-recovery 0s":   "--max-recovery must be positive",
		"--drill apiserver --max-recovery -10s": "--max-recovery must be positive",
	} {
		_, err := run(t, append([]string{"verify"}, strings.Fields(args)...)...)
		if err == nil || err.Error() != want {
			t.Errorf("verify %s: got %v, want %q", args, err, want)
		}
	}
}

// Off a terminal the drill runs only with --yes, and a refusal deletes nothing.
func TestVerifyDrillAsksOrNeedsYes(t *testing.T) {
	if err := confirm(strings.NewReader("yes\n"), &strings.Builder{}, "This deletes every kube-apiserver pod."); err == nil ||
		!strings.Contains(err.Error(), "Pass --yes to run the drill without a prompt") {
		t.Errorf("a pipe answered the prompt: %v", err)
	}

	// One control-plane node and no checkpointer: the preflight refuses.
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-1", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-x", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-apiserver"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "kube-apiserver"}}},
			Spec:   corev1.PodSpec{NodeName: "cp-1"},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		},
	)
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	o := &VerifyOptions{IOStreams: streams, Drill: "apiserver", Yes: true, client: client}
	err := o.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "refusing to drill: 0 of 1 control-plane nodes hold a ready checkpoint") {
		t.Errorf("want the preflight's refusal, got %v", err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("a refused drill did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}
