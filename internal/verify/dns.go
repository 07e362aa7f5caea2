package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// PodDNSProber resolves a name with nslookup in a short-lived pod, so the
// answer comes through the pod network, kube-proxy and CoreDNS, as an app's would.
type PodDNSProber struct {
	Client    kubernetes.Interface
	Namespace string
	Image     string
	Timeout   time.Duration
}

// Resolve runs the probe pod, reads its answer and deletes it.
func (p *PodDNSProber) Resolve(ctx context.Context, name string) (string, error) {
	pod, err := p.Client.CoreV1().Pods(p.Namespace).Create(ctx, p.probePod(name), metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("cannot create the probe pod: %w", err)
	}
	defer p.Client.CoreV1().Pods(p.Namespace).Delete(context.WithoutCancel(ctx), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})

	var phase corev1.PodPhase
	err = wait.PollUntilContextTimeout(ctx, time.Second, p.Timeout, true, func(ctx context.Context) (bool, error) {
		got, err := p.Client.CoreV1().Pods(p.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil // keep trying through a brief API hiccup
		}
		phase = got.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		return "", fmt.Errorf("probe pod %s/%s still %s after %s", p.Namespace, pod.Name, phaseOrPending(phase), p.Timeout)
	}
	logs, err := p.Client.CoreV1().Pods(p.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("cannot read the probe pod's output: %w", err)
	}
	if phase == corev1.PodFailed {
		return "", fmt.Errorf("nslookup failed: %s", oneLine(string(logs)))
	}
	return parseNslookup(string(logs), name)
}

func (p *PodDNSProber) probePod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "selfhost-dns-probe-",
			Labels:       map[string]string{"app.kubernetes.io/managed-by": "kubectl-selfhost"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](65534),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "nslookup",
				Image:           p.Image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"nslookup", name},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

func phaseOrPending(p corev1.PodPhase) corev1.PodPhase {
	if p == "" {
		return corev1.PodPending
	}
	return p
}

// parseNslookup returns the first address listed after the answer's Name line.
func parseNslookup(out, name string) (string, error) {
	answered := false
	for _, line := range strings.Split(out, "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch {
		case key == "Name" && strings.TrimSuffix(value, ".") == name:
			answered = true
		case key == "Address" && answered:
			return value, nil
		}
	}
	return "", errors.New("no address in nslookup's answer: " + oneLine(out))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
