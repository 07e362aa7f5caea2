package pivot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// Paths on every control-plane node.
const (
	ManifestDir = "/etc/kubernetes/manifests"
	BackupDir   = "/etc/kubernetes/selfhost-backup"
	stagingDir  = "/etc/kubernetes/selfhost-staging"
)

// agentJob is a shell script run once on one node by a short-lived pod:
// the only way to touch a node's files through the API alone.
type agentJob struct {
	Node    string
	Purpose string            // e.g. "share-port-kube-apiserver"
	Script  string            // run by sh -eu; /payload holds Payload
	Payload map[string]string // file name -> content
}

func (j agentJob) name() string {
	sum := sha256.Sum256([]byte(j.Node + "/" + j.Purpose))
	return fmt.Sprintf("selfhost-agent-%x", sum[:6])
}

// runAgent runs the job to completion and returns its output. A leftover pod
// of an interrupted run is removed first, so the job can always be run again.
func runAgent(ctx context.Context, c *Context, j agentJob) (string, error) {
	name := j.name()
	pods, cms := c.Client.CoreV1().Pods(kube.Namespace), c.Client.CoreV1().ConfigMaps(kube.Namespace)
	if err := deleteAndWait(ctx, c, name); err != nil {
		return "", err
	}
	_ = cms.Delete(ctx, name, metav1.DeleteOptions{})
	labels := map[string]string{"app.kubernetes.io/managed-by": FieldManager, "app.kubernetes.io/component": "node-agent"}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: j.Payload}, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		return "", fmt.Errorf("cannot create the payload of the node agent on %s: %w", j.Node, err)
	}
	defer cms.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{})
	if _, err := pods.Create(ctx, agentPod(name, labels, j, c.Options.ToolsImage), metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		return "", fmt.Errorf("cannot start the node agent on %s: %w", j.Node, err)
	}
	defer pods.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	c.Waiting("node agent %s on %s to %s", name, j.Node, j.Purpose)
	var phase corev1.PodPhase
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // the API may blink while a server restarts
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		return "", fmt.Errorf("node agent %s on %s did not finish (phase %q): %w", name, j.Node, phase, err)
	}
	logs, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if phase == corev1.PodFailed {
		return "", fmt.Errorf("node agent on %s failed to %s: %s", j.Node, j.Purpose, strings.Join(strings.Fields(string(logs)), " "))
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the output of the node agent on %s: %w", j.Node, err)
	}
	return string(logs), nil
}

func deleteAndWait(ctx context.Context, c *Context, name string) error {
	pods := c.Client.CoreV1().Pods(kube.Namespace)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func agentPod(name string, labels map[string]string, j agentJob, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                     j.Node, // no scheduler needed: it may be the thing moving
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
			PriorityClassName:            "system-node-critical",
			Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:            "agent",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"sh", "-euc", j.Script},
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true), RunAsUser: ptr.To[int64](0)},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "kubernetes", MountPath: "/etc/kubernetes"},
					{Name: "payload", MountPath: "/payload", ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "kubernetes", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/kubernetes", Type: ptr.To(corev1.HostPathDirectory)}}},
				{Name: "payload", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
			},
		},
	}
}

// replaceStaticScript installs /payload/<file> as the static manifest,
// keeping kubeadm's original in the backup directory the first time. The
// staging directory is on the same filesystem, so the final mv is atomic and
// the kubelet never reads half a file.
func replaceStaticScript(file string) string {
	return fmt.Sprintf(`mkdir -p %[2]s %[3]s
[ -f %[2]s/%[1]s ] || cp %[4]s/%[1]s %[2]s/%[1]s
cp /payload/%[1]s %[3]s/%[1]s
mv %[3]s/%[1]s %[4]s/%[1]s
echo "replaced %[4]s/%[1]s"`, file, BackupDir, stagingDir, ManifestDir)
}

// removeStaticScript moves the static manifest out of the kubelet's sight.
// kubeadm's original stays as <file> in the backup; the port-sharing
// version, if any, is kept beside it for a revert.
func removeStaticScript(file string) string {
	return fmt.Sprintf(`mkdir -p %[2]s
if [ -f %[3]s/%[1]s ]; then
  if [ -f %[2]s/%[1]s ]; then mv %[3]s/%[1]s %[2]s/%[1]s.port-sharing; else mv %[3]s/%[1]s %[2]s/%[1]s; fi
fi
echo "moved %[3]s/%[1]s to %[2]s"`, file, BackupDir, ManifestDir)
}

// fileMarker starts each file in a node agent's output.
const fileMarker = "@@selfhost-file "

// readFilesScript prints each file under dir, base64-encoded after a marker
// line. The agent's log is the only way back from the node through the API;
// it lives on the node that already holds the files, and goes with the pod.
func readFilesScript(dir string, files []string) string {
	// Every file is checked before any is printed, so a failure's output,
	// which the error shows, holds no key.
	return fmt.Sprintf(`cd %[1]s
for f in %[2]s; do [ -r "$f" ] || { echo "%[1]s/$f is missing"; exit 1; }; done
for f in %[2]s; do echo "%[3]s$f"; base64 "$f"; done`, dir, strings.Join(files, " "), fileMarker)
}

// parseFiles decodes readFilesScript's output into file -> content.
func parseFiles(out string) (map[string][]byte, error) {
	files := map[string][]byte{}
	var name string
	var b64 strings.Builder
	flush := func() error {
		if name == "" {
			return nil
		}
		data, err := base64.StdEncoding.DecodeString(b64.String())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		files[name] = data
		b64.Reset()
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if f, ok := strings.CutPrefix(line, fileMarker); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = f
			continue
		}
		b64.WriteString(line)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return files, nil
}
