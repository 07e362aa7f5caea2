package checkpoint

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// VolumeCopy is a secret or configMap volume that a checkpoint reads from a
// hostPath copy instead of from the API.
type VolumeCopy struct {
	Volume string // volume name in the parent
	Dir    string // host directory of the copy
	// Sources in projection order; a plain secret or configMap volume has one.
	Sources     []CopySource
	DefaultMode int32
	UID, GID    int64 // owner of the copy, from the pod's security context
}

// CopySource is one secret, configMap or service-account token projected
// into a VolumeCopy.
type CopySource struct {
	Kind     string // "Secret", "ConfigMap" or TokenKind
	Name     string // of a TokenKind source: the service account
	Items    []corev1.KeyToPath
	Optional bool
	Audience string // of a TokenKind source; empty is the API server's
}

// TokenKind is a CopySource of a service-account token, from a TokenRequest.
// Its data has the one key TokenKey.
const (
	TokenKind = "ServiceAccountToken"
	TokenKey  = "token"
)

// Labels that controllers put on the pods they own. A checkpoint drops them so
// that no controller counts its mirror pod as one of its own.
var controllerLabels = []string{"pod-template-hash", "controller-revision-hash", "pod-template-generation"}

// Annotations that belong to the parent's life in the API, not to its spec.
var droppedAnnotations = []string{
	CheckpointAnnotation, BootkubeCheckpointAnnotation, BootkubeCheckpointOfAnnotation, ArgsAnnotation,
	"kubectl.kubernetes.io/last-applied-configuration",
}

// Sanitize turns a parent pod into a static pod that the kubelet will run and
// that NodeRestriction admits as a mirror pod: no service account, no API
// token, no secret, configMap or claim reference, no image pull secret, no
// owner. Secret and configMap volumes become hostPath copies under
// secretRoot/<namespace>/<pod>/<volume>/; the returned copies say what to write
// there. Sanitize is idempotent: the checkpoint of a checkpoint is itself.
func Sanitize(parent *corev1.Pod, secretRoot string) (*corev1.Pod, []VolumeCopy, error) {
	p := parent.DeepCopy()
	parentName := CheckpointOf(parent)
	if parentName == "" {
		parentName = parent.Name
	}
	id := p.Namespace + "/" + parentName // names the pod in errors

	checkpointMeta(p, parent, parentName)
	if err := dropAPISpec(&p.Spec, id); err != nil {
		return nil, nil, err
	}
	if args := strings.Fields(parent.Annotations[ArgsAnnotation]); len(args) > 0 {
		ownAddress(&p.Spec, args)
	}
	uid, gid := podOwner(p)
	token := keptToken{volume: parent.Annotations[TokenVolumeAnnotation], account: parent.Spec.ServiceAccountName}
	copies, dropped, err := copyVolumes(&p.Spec, filepath.Join(secretRoot, p.Namespace, parentName), id, uid, gid, token)
	if err != nil {
		return nil, nil, err
	}
	if err := staticContainers(&p.Spec, dropped, id); err != nil {
		return nil, nil, err
	}
	return p, copies, nil
}

// checkpointMeta keeps of the parent's metadata what describes the pod, not
// its life in the API, names the checkpoint after the parent and records the
// parent's controller, which recognises a successor. The status goes too.
func checkpointMeta(p, parent *corev1.Pod, parentName string) {
	labels := p.Labels
	for _, l := range controllerLabels {
		delete(labels, l)
	}
	annotations := map[string]string{}
	for k, v := range p.Annotations {
		if !strings.HasPrefix(k, "kubernetes.io/config.") && !contains(droppedAnnotations, k) {
			annotations[k] = v
		}
	}
	annotations[CheckpointOfAnnotation] = parentName
	if owner := Owner(parent); owner != "" {
		annotations[OwnerAnnotation] = owner
	}
	if !parent.CreationTimestamp.IsZero() {
		annotations[ParentCreatedAnnotation] = parent.CreationTimestamp.UTC().Format(time.RFC3339)
	}
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	p.ObjectMeta = metav1.ObjectMeta{Name: parentName, Namespace: p.Namespace, Labels: labels, Annotations: annotations}
	p.Status = corev1.PodStatus{}
}

// dropAPISpec clears the spec fields that need the API or the scheduler,
// and refuses resource claims, which a static pod cannot reference.
func dropAPISpec(s *corev1.PodSpec, id string) error {
	s.ServiceAccountName = ""
	s.DeprecatedServiceAccount = ""
	s.AutomountServiceAccountToken = new(false)
	s.NodeName = "" // the kubelet sets it on static pods
	s.NodeSelector = nil
	s.Affinity = nil
	s.ImagePullSecrets = nil
	s.EphemeralContainers = nil
	s.SchedulingGates = nil
	if len(s.ResourceClaims) > 0 {
		return fmt.Errorf("pod %s uses resource claims, which a static pod cannot reference", id)
	}
	return nil
}

// volumeFate is what becomes of a parent's volume in its checkpoint.
type volumeFate int

const (
	keepVolume volumeFate = iota // mounted as it is, such as a hostPath
	copyVolume                   // a secret or configMap, read from a hostPath copy
	dropVolume                   // a projected API token
)

// copyVolumes replaces every secret, configMap and projected volume by a
// hostPath copy under dir and drops projected API tokens. It returns the
// copies to write and the names of the dropped volumes.
func copyVolumes(s *corev1.PodSpec, dir, id string, uid, gid int64, token keptToken) ([]VolumeCopy, []string, error) {
	var copies []VolumeCopy
	var dropped []string
	volumes := s.Volumes[:0]
	for _, v := range s.Volumes {
		vc := VolumeCopy{Volume: v.Name, Dir: filepath.Join(dir, v.Name), UID: uid, GID: gid}
		fate, err := copySources(&vc, v, id, token)
		switch {
		case err != nil:
			return nil, nil, err
		case fate == keepVolume:
			volumes = append(volumes, v)
		case fate == dropVolume:
			dropped = append(dropped, v.Name) // the API token dies with the API; nothing to keep
		default:
			copies = append(copies, vc)
			volumes = append(volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: vc.Dir, Type: new(corev1.HostPathDirectory)},
			}})
		}
	}
	s.Volumes = volumes
	return copies, dropped, nil
}

// copySources fills vc's sources and default mode from v and says what
// becomes of v. It refuses a volume that a checkpoint cannot copy: a claim,
// or a projection of anything but secrets and configMaps.
// keptToken is the projected volume whose token a checkpoint keeps
// (TokenVolumeAnnotation) and the service account it is for.
type keptToken struct{ volume, account string }

func copySources(vc *VolumeCopy, v corev1.Volume, id string, token keptToken) (volumeFate, error) {
	switch {
	case v.Secret != nil:
		vc.DefaultMode = modeOr(v.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode)
		vc.Sources = []CopySource{{Kind: "Secret", Name: v.Secret.SecretName, Items: v.Secret.Items, Optional: ptrTrue(v.Secret.Optional)}}
	case v.ConfigMap != nil:
		vc.DefaultMode = modeOr(v.ConfigMap.DefaultMode, corev1.ConfigMapVolumeSourceDefaultMode)
		vc.Sources = []CopySource{{Kind: "ConfigMap", Name: v.ConfigMap.Name, Items: v.ConfigMap.Items, Optional: ptrTrue(v.ConfigMap.Optional)}}
	case v.Projected != nil:
		if hasToken(v.Projected) && v.Name != token.volume {
			return dropVolume, nil
		}
		vc.DefaultMode = modeOr(v.Projected.DefaultMode, corev1.ProjectedVolumeSourceDefaultMode)
		for _, src := range v.Projected.Sources {
			switch {
			case src.ServiceAccountToken != nil:
				if token.account == "" {
					return keepVolume, fmt.Errorf("pod %s keeps the token of volume %q but names no service account", id, v.Name)
				}
				vc.Sources = append(vc.Sources, CopySource{Kind: TokenKind, Name: token.account, Audience: src.ServiceAccountToken.Audience,
					Items: []corev1.KeyToPath{{Key: TokenKey, Path: src.ServiceAccountToken.Path}}})
			case src.Secret != nil:
				vc.Sources = append(vc.Sources, CopySource{Kind: "Secret", Name: src.Secret.Name, Items: src.Secret.Items, Optional: ptrTrue(src.Secret.Optional)})
			case src.ConfigMap != nil:
				vc.Sources = append(vc.Sources, CopySource{Kind: "ConfigMap", Name: src.ConfigMap.Name, Items: src.ConfigMap.Items, Optional: ptrTrue(src.ConfigMap.Optional)})
			default:
				return keepVolume, fmt.Errorf("pod %s projects volume %q from a source other than secrets, configMaps and a kept token, which a checkpoint cannot copy", id, v.Name)
			}
		}
	case v.PersistentVolumeClaim != nil || v.Ephemeral != nil:
		return keepVolume, fmt.Errorf("pod %s mounts volume %q from a claim, which a static pod cannot reference", id, v.Name)
	default:
		return keepVolume, nil
	}
	return copyVolume, nil
}

// staticContainers refuses containers that read a secret or configMap
// through their environment and makes the others start as a static pod:
// without the dropped volumes' mounts and without the registry.
func staticContainers(s *corev1.PodSpec, dropped []string, id string) error {
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			c := &cs[i]
			if err := checkEnv(c); err != nil {
				return fmt.Errorf("pod %s: %w", id, err)
			}
			c.VolumeMounts = withoutMounts(c.VolumeMounts, dropped)
			// A checkpoint must start with the registry unreachable.
			c.ImagePullPolicy = corev1.PullIfNotPresent
			if s.HostNetwork {
				// On the host network a declared port is a host port, and the
				// kubelet refuses a second pod on the same one. Dropping the
				// ports lets checkpoint and parent share 6443 during the
				// hand-over; probes keep working through numeric ports.
				resolveNamedPorts(c)
				c.Ports = nil
			}
		}
	}
	return nil
}

// ownAddress appends args, which bind the checkpoint to the pod's own address,
// to the first container, and points every probe there too: a probe aimed at
// 127.0.0.1 would reach the parent instead.
func ownAddress(s *corev1.PodSpec, args []string) {
	if len(s.Containers) == 0 {
		return
	}
	if c := &s.Containers[0]; len(c.Args) > 0 {
		c.Args = append(c.Args, args...)
	} else {
		c.Command = append(c.Command, args...)
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr != nil && pr.HTTPGet != nil {
				pr.HTTPGet.Host = ""
			}
			if pr != nil && pr.TCPSocket != nil {
				pr.TCPSocket.Host = ""
			}
		}
	}
}

func checkEnv(c *corev1.Container) error {
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil || e.ConfigMapRef != nil {
			return fmt.Errorf("container %q reads its environment from a secret or configMap, which a static pod cannot reference", c.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef != nil || e.ValueFrom.ConfigMapKeyRef != nil) {
			return fmt.Errorf("container %q reads variable %s from a secret or configMap, which a static pod cannot reference", c.Name, e.Name)
		}
	}
	return nil
}

func resolveNamedPorts(c *corev1.Container) {
	resolve := func(p *intstr.IntOrString) {
		if p.Type != intstr.String {
			return
		}
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				*p = intstr.FromInt32(cp.ContainerPort)
				return
			}
		}
	}
	handler := func(h *corev1.ProbeHandler) {
		if h.HTTPGet != nil {
			resolve(&h.HTTPGet.Port)
		}
		if h.TCPSocket != nil {
			resolve(&h.TCPSocket.Port)
		}
	}
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if pr != nil {
			handler(&pr.ProbeHandler)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h == nil {
				continue
			}
			if h.HTTPGet != nil {
				resolve(&h.HTTPGet.Port)
			}
			if h.TCPSocket != nil {
				resolve(&h.TCPSocket.Port)
			}
		}
	}
}

func hasToken(p *corev1.ProjectedVolumeSource) bool {
	for _, s := range p.Sources {
		if s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

func withoutMounts(ms []corev1.VolumeMount, dropped []string) []corev1.VolumeMount {
	if len(dropped) == 0 {
		return ms
	}
	out := ms[:0]
	for _, m := range ms {
		if !contains(dropped, m.Name) {
			out = append(out, m)
		}
	}
	return out
}

// podOwner is the user and group the pod's containers run as; its volume
// copies belong to them so that a non-root container can read them.
func podOwner(p *corev1.Pod) (uid, gid int64) {
	if sc := p.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.FSGroup != nil {
			gid = *sc.FSGroup
		} else if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	for _, c := range p.Spec.Containers {
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = *c.SecurityContext.RunAsUser
			break
		}
	}
	return uid, gid
}

func modeOr(m *int32, def int32) int32 {
	if m != nil {
		return *m
	}
	return def
}

func ptrTrue(b *bool) bool { return b != nil && *b }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
