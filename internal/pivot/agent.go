package pivot

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
)

// Paths on every control-plane node.
const (
	ManifestDir = "/etc/kubernetes/manifests"
	BackupDir   = "/etc/kubernetes/selfhost-backup"
	stagingDir  = "/etc/kubernetes/selfhost-staging"
)

// agentJob is work done once on one node by a short-lived pod: the only
// way to touch a node's files through the API alone. It is either a shell
// script in the tools image or, with Args, our own node-side program.
type agentJob struct {
	Node    string
	Purpose string            // e.g. "share-port-kube-apiserver"
	Script  string            // run by sh -eu; /payload holds Payload
	Payload map[string]string // file name -> content
	// Args run the checkpointer image with the short-lived token of
	// ServiceAccount credentialsAgent and kubeadm's pki directory read-only.
	Args []string
	// HostPID lets the script see, and signal, the node's processes.
	HostPID bool
	// WritePKI mounts kubeadm's pki directory writable for Args.
	WritePKI bool
}

// agentDeadline bounds a node agent's pod, so one left behind by a killed
// bootstrap stops by itself.
const agentDeadline = 5 * time.Minute

// agentLabels mark every node agent and its payload, so leftovers can be found.
var agentLabels = map[string]string{"app.kubernetes.io/managed-by": ssa.FieldManager, "app.kubernetes.io/component": "node-agent"}

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
	pod := agentPod(name, j, c.pinned(c.Options.ToolsImage))
	if j.Args != nil {
		pod = credentialsAgentPod(name, j, c.pinned(c.Cluster.Images.Checkpointer))
	} else {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: agentLabels}, Data: j.Payload}, metav1.CreateOptions{FieldManager: ssa.FieldManager}); err != nil {
			return "", fmt.Errorf("cannot create the payload of the node agent on %s: %w", j.Node, err)
		}
		defer cms.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{})
	}
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{FieldManager: ssa.FieldManager}); err != nil {
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
		if phase == corev1.PodSucceeded {
			c.learnDigest(pod.Spec.Containers[0].Image, p)
		}
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

// RemoveAgents deletes every node agent pod and payload, and the
// credentials agent's account, such as those a killed bootstrap left behind.
func RemoveAgents(ctx context.Context, c *Context) error {
	revokeCredentialsAgent(ctx, c)
	selector := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(agentLabels).String()}
	pods, cms := c.Client.CoreV1().Pods(kube.Namespace), c.Client.CoreV1().ConfigMaps(kube.Namespace)
	podList, err := pods.List(ctx, selector)
	if err != nil {
		return fmt.Errorf("cannot list leftover node agents: %w", err)
	}
	for _, p := range podList.Items {
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cannot remove leftover node agent %s: %w", p.Name, err)
		}
	}
	cmList, err := cms.List(ctx, selector)
	if err != nil {
		return fmt.Errorf("cannot list leftover node agent payloads: %w", err)
	}
	for _, cm := range cmList.Items {
		if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cannot remove leftover node agent payload %s: %w", cm.Name, err)
		}
	}
	return nil
}

// basePod is what every node agent pod shares.
func basePod(name string, j agentJob) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: agentLabels},
		Spec: corev1.PodSpec{
			NodeName:                     j.Node, // no scheduler needed: it may be the thing moving
			RestartPolicy:                corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:        ptr.To(int64(agentDeadline.Seconds())),
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
			PriorityClassName:            "system-node-critical",
			Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
}

// agentPod runs a script with /etc/kubernetes and the payload mounted.
func agentPod(name string, j agentJob, image string) *corev1.Pod {
	p := basePod(name, j)
	p.Spec.HostPID = j.HostPID
	p.Spec.Containers = []corev1.Container{{
		Name:            "agent",
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"sh", "-euc", j.Script},
		SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true), RunAsUser: ptr.To[int64](0)},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "kubernetes", MountPath: "/etc/kubernetes"},
			{Name: "payload", MountPath: "/payload", ReadOnly: true},
		},
	}}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "kubernetes", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/kubernetes", Type: ptr.To(corev1.HostPathDirectory)}}},
		{Name: "payload", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
	}
	return p
}

// tokenTTL is the life of the credentials agent's token, the API's minimum.
const tokenTTL = 10 * time.Minute

// credentialsAgentPod runs the credentials agent (nodecreds) with kubeadm's pki directory
// (read-only unless it restores files), no capabilities, and a token that
// expires in minutes.
func credentialsAgentPod(name string, j agentJob, image string) *corev1.Pod {
	p := basePod(name, j)
	p.Spec.ServiceAccountName = credentialsAgent
	p.Spec.Containers = []corev1.Container{{
		Name:            "agent",
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            j.Args,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](0), ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "pki", MountPath: kubeadmPKI, ReadOnly: !j.WritePKI},
			{Name: "token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
		},
	}}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "pki", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: kubeadmPKI, Type: ptr.To(corev1.HostPathDirectory)}}},
		{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To(int64(tokenTTL.Seconds()))}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		}}}},
	}
	return p
}

// staticSwap replaces one static manifest.
type staticSwap struct {
	file    string // in the manifest directory, e.g. kube-apiserver.yaml
	content string // the new manifest
	// oldPod is the UID of the pod the kubelet runs from the current
	// manifest (its config hash), or "" when there is none.
	oldPod string
	// apiServerPort is set for kube-apiserver: it lingers after SIGTERM.
	apiServerPort int32
}

// swapWait bounds each wait of a swap, so the new manifests always go in.
const swapWait = 35 * time.Second

// lingerDrain is how long kubeadm's API server keeps its open connections,
// once it has stopped listening, before it is asked again to exit.
const lingerDrain = 2 * time.Second

// kubeletSettle is how long the kubelet gets, once an old pod's processes
// are gone, to finish with it (unmount its volumes, forget its name): a new
// static pod of the same name that comes sooner waits out the back-off. 1 s
// was too short once in six passes on a 2-core host.
const kubeletSettle = 3 * time.Second

// repairScript puts back a new manifest that an interrupted swap left
// staged while its node had none. Every manifest script starts with it.
func repairScript() string {
	return fmt.Sprintf(`for next in %[1]s/*.next; do
  [ -f "$next" ] || continue
  file=${next##*/}; file=${file%%.next}
  [ -f %[2]s/$file ] || { mv "$next" %[2]s/$file; echo "put back the staged %[2]s/$file"; }
done`, stagingDir, ManifestDir)
}

// swapStaticScript replaces static manifests on a node in two phases, so
// the kubelet starts each new pod at once instead of after a back-off of
// 10 to 15 s, which it keeps for a new static pod whose namesake still
// terminates. Every payload is checked against the sha256 sum the plugin
// computed before anything changes; kubeadm's originals are kept in the
// backup directory the first time. Then:
//  1. the current manifests leave the kubelet's sight, and it stops their pods;
//  2. kubeadm's API server stops listening at once but lingers for its whole
//     grace period (30 s): once it has stopped listening and had lingerDrain
//     for its open connections, a second SIGTERM makes it exit
//     (k8s.io/apiserver's signal handler). The pod needs HostPID;
//  3. once no process of the old pods is left (their cgroups name the pod
//     UID) and the kubelet has had kubeletSettle, or after swapWait, the new
//     manifests go in by an atomic mv from the staging directory on the
//     same filesystem.
//
// A swap cut short leaves its new manifests staged; repairScript installs them.
func swapStaticScript(swaps []staticSwap) string {
	var check, stage, stop, oldPods, install []string
	findAPIServer, port := "", int32(0)
	for _, w := range swaps {
		check = append(check, payloadCheckScript(w.file, w.content))
		stage = append(stage, fmt.Sprintf(`[ -f %[2]s/%[1]s ] || [ ! -f %[4]s/%[1]s ] || cp %[4]s/%[1]s %[2]s/%[1]s
cp /payload/%[1]s %[3]s/%[1]s.next
chmod 600 %[3]s/%[1]s.next`, w.file, BackupDir, stagingDir, ManifestDir))
		stop = append(stop, fmt.Sprintf(`[ ! -f %[3]s/%[1]s ] || mv %[3]s/%[1]s %[2]s/%[1]s.previous`, w.file, stagingDir, ManifestDir))
		if w.oldPod != "" {
			oldPods = append(oldPods, w.oldPod)
		}
		install = append(install, fmt.Sprintf(`mv %[2]s/%[1]s.next %[3]s/%[1]s
rm -f %[2]s/%[1]s.previous
echo "replaced %[3]s/%[1]s"`, w.file, stagingDir, ManifestDir))
		if w.apiServerPort != 0 {
			port = w.apiServerPort
			findAPIServer = `lingering=""
for d in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
  case "$cmd" in
    *--permit-port-sharing*) ;;
    "kube-apiserver "*|*/kube-apiserver\ *) lingering="$lingering ${d#/proc/}" ;;
  esac
done`
		}
	}
	steps := []string{repairScript(), strings.Join(check, "\n"), "mkdir -p " + BackupDir + " " + stagingDir, strings.Join(stage, "\n")}
	if findAPIServer != "" {
		steps = append(steps, findAPIServer)
	}
	steps = append(steps, strings.Join(stop, "\n"))
	if findAPIServer != "" {
		steps = append(steps, fmt.Sprintf(`listening() { cat /proc/$1/net/tcp /proc/$1/net/tcp6 2>/dev/null | awk '$4 == "0A" && substr($2, length($2) - 4) == ":%04X" { found = 1 } END { exit !found }'; }
for pid in $lingering; do
  i=0
  while listening "$pid" && [ $i -lt %d ]; do sleep 0.1; i=$((i + 1)); done
  if ! listening "$pid" && kill -0 "$pid" 2>/dev/null; then
    sleep %d
    kill -TERM "$pid" 2>/dev/null && echo "kube-apiserver (pid $pid) stopped listening; asked it again to exit"
  fi
done`, port, int(swapWait/(100*time.Millisecond)), int(lingerDrain.Seconds())))
	}
	if len(oldPods) > 0 {
		steps = append(steps, fmt.Sprintf(`i=0
while grep -qsE 'pod(%s)' /proc/[0-9]*/cgroup && [ $i -lt %d ]; do sleep 0.2; i=$((i + 1)); done
sleep %d`, strings.Join(oldPods, "|"), int(swapWait/(200*time.Millisecond)), int(kubeletSettle.Seconds())))
	}
	return strings.Join(append(steps, strings.Join(install, "\n")), "\n")
}

// payloadCheckScript stops an agent's script unless /payload/<file> is
// content, by its sha256 sum.
func payloadCheckScript(file, content string) string {
	return fmt.Sprintf(`echo "%[2]x  /payload/%[1]s" | sha256sum -c - >/dev/null 2>&1 || { echo "/payload/%[1]s is not what the plugin sent"; exit 1; }`,
		file, sha256.Sum256([]byte(content)))
}

// removeStaticScript moves the static manifest out of the kubelet's sight.
// kubeadm's original stays as <file> in the backup; the port-sharing
// version, if any, is kept beside it for a revert.
func removeStaticScript(file string) string {
	return repairScript() + "\n" + fmt.Sprintf(`mkdir -p %[2]s
if [ -f %[3]s/%[1]s ]; then
  if [ -f %[2]s/%[1]s ]; then mv %[3]s/%[1]s %[2]s/%[1]s.port-sharing; else mv %[3]s/%[1]s %[2]s/%[1]s; fi
fi
echo "moved %[3]s/%[1]s to %[2]s"`, file, BackupDir, ManifestDir)
}

// pinned is image by digest, where a node agent has run it and the runtime
// knows its repository digest; else image as given.
func (c *Context) pinned(image string) string {
	c.digestsMu.Lock()
	defer c.digestsMu.Unlock()
	if p, ok := c.digests[image]; ok {
		return p
	}
	return image
}

// learnDigest pins image to the repository digest its finished pod ran. An
// image without one (loaded into the node, never pulled) stays by name.
func (c *Context) learnDigest(image string, p *corev1.Pod) {
	if strings.Contains(image, "@") || len(p.Status.ContainerStatuses) == 0 {
		return
	}
	repo, digest, ok := strings.Cut(p.Status.ContainerStatuses[0].ImageID, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") || repo != repository(image) {
		return
	}
	c.digestsMu.Lock()
	defer c.digestsMu.Unlock()
	if c.digests == nil {
		c.digests = map[string]string{}
	}
	c.digests[image] = image + "@" + digest
}

// repository is an image reference without its tag.
func repository(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}
