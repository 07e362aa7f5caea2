package recovery

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pivot"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
)

// Source is what recover read from etcd.
type Source struct {
	// APIServer is the kube-apiserver DaemonSet: the stored one, or the
	// recovery record's copy when it was deleted. Checkpointer likewise,
	// nil when neither holds it.
	APIServer, Checkpointer *appsv1.DaemonSet
	// Static holds the pod template of each component recover runs as a
	// static pod: the API server, and kube-controller-manager when etcd
	// holds its Deployment. Without a controller manager nothing creates
	// the DaemonSets' pods, and the self-hosted one may sit in a crash-loop
	// back-off of minutes after a long outage.
	Static map[string]*corev1.PodTemplateSpec
	// From says where each component's spec came from, for people.
	From map[string]string
	// Volumes holds the data of each Secret or ConfigMap volume of each
	// static component: component -> volume -> file path -> content.
	Volumes map[string]map[string]map[string][]byte
	// Read lists every object read, for people: kind and name, no content.
	Read []string
}

// Read reads the DaemonSets, the controller manager's Deployment and the
// Secrets and ConfigMaps they mount, straight from etcd under prefix
// (kube-apiserver's --etcd-prefix).
func Read(ctx context.Context, e *Etcd, prefix string) (*Source, error) {
	s := &Source{Static: map[string]*corev1.PodTemplateSpec{}, From: map[string]string{}, Volumes: map[string]map[string]map[string][]byte{}}
	key := func(resource, name string) string { return path.Join(prefix, resource, kube.Namespace, name) }
	// get decodes the object stored for resource/name into obj, and says
	// whether there was one.
	get := func(resource, name string, obj runtime.Object) (bool, error) {
		k := key(resource, name)
		value, ok, err := e.Get(ctx, k)
		if err != nil || !ok {
			return false, err
		}
		return true, decode(k, value, obj)
	}

	var recorded map[string]*appsv1.DaemonSet
	cm := &corev1.ConfigMap{}
	if ok, err := get("configmaps", record.Name, cm); err != nil {
		return nil, err
	} else if ok {
		if recorded, err = record.Decode(cm); err != nil {
			return nil, err
		}
		s.Read = append(s.Read, "ConfigMap "+kube.Namespace+"/"+record.Name+" (the recovery record)")
	}
	for _, name := range record.DaemonSets {
		ds := &appsv1.DaemonSet{}
		ok, err := get("daemonsets", name, ds)
		if err != nil {
			return nil, err
		}
		from := "DaemonSet " + kube.Namespace + "/" + name
		if ok {
			s.Read = append(s.Read, from)
		} else {
			ds, from = recorded[name], "the recovery record"
		}
		if name == "kube-apiserver" {
			s.APIServer = ds
		} else {
			s.Checkpointer = ds
		}
		if ds != nil {
			s.From[name] = from
		}
	}
	if s.APIServer == nil {
		return nil, fmt.Errorf("etcd holds neither DaemonSet %s/kube-apiserver nor the recovery record %s/%s under %s: there is no API server spec to recover from", kube.Namespace, kube.Namespace, record.Name, prefix)
	}
	s.Static["kube-apiserver"] = &s.APIServer.Spec.Template
	const kcm = "kube-controller-manager"
	d := &appsv1.Deployment{}
	if ok, err := get("deployments", kcm, d); err != nil {
		return nil, err
	} else if ok {
		s.Static[kcm] = &d.Spec.Template
		s.From[kcm] = "Deployment " + kube.Namespace + "/" + kcm
		s.Read = append(s.Read, s.From[kcm])
	}
	for _, comp := range sortedKeys(s.Static) {
		if err := s.readVolumes(comp, get, key); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// readVolumes reads the Secrets and ConfigMaps component mounts.
func (s *Source) readVolumes(component string, get func(string, string, runtime.Object) (bool, error), key func(string, string) string) error {
	s.Volumes[component] = map[string]map[string][]byte{}
	for _, v := range s.Static[component].Spec.Volumes {
		var (
			resource, name string
			items          []corev1.KeyToPath
		)
		switch {
		case v.Secret != nil:
			resource, name, items = "secrets", v.Secret.SecretName, v.Secret.Items
		case v.ConfigMap != nil:
			resource, name, items = "configmaps", v.ConfigMap.Name, v.ConfigMap.Items
		default:
			continue
		}
		k := key(resource, name)
		data := map[string][]byte{}
		var ok bool
		var err error
		if resource == "secrets" {
			secret := &corev1.Secret{}
			ok, err = get(resource, name, secret)
			data = secret.Data
		} else {
			cm := &corev1.ConfigMap{}
			ok, err = get(resource, name, cm)
			for key, v := range cm.Data {
				data[key] = []byte(v)
			}
			for key, v := range cm.BinaryData {
				data[key] = v
			}
		}
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s mounts %s %s/%s, which etcd does not hold at %s", component, kindOf(resource), kube.Namespace, name, k)
		}
		files, err := project(data, items)
		if err != nil {
			return fmt.Errorf("volume %s of %s: %w", v.Name, component, err)
		}
		s.Volumes[component][v.Name] = files
		s.Read = append(s.Read, fmt.Sprintf("%s %s/%s (%d items)", kindOf(resource), kube.Namespace, name, len(files)))
	}
	return nil
}

// project lays out a volume's files as the kubelet would: every key, or
// only the listed items at their paths.
func project(data map[string][]byte, items []corev1.KeyToPath) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = v
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("no item %s", it.Key)
		}
		if !filepath.IsLocal(it.Path) {
			return nil, fmt.Errorf("item path %s leaves the volume", it.Path)
		}
		out[it.Path] = v
	}
	return out, nil
}

// StaticPods are the static pods recover writes, by manifest file name:
// each component's template, its Secret and ConfigMap volumes read from
// their copies under dir/<component>/<volume>.
func (s *Source) StaticPods(dir string) (map[string]*corev1.Pod, error) {
	out := map[string]*corev1.Pod{}
	for comp, t := range s.Static {
		p, err := pivot.StaticFromTemplate(comp, t, "", func(v corev1.Volume) string { return filepath.Join(dir, comp, v.Name) })
		if err != nil {
			return nil, err
		}
		p.Annotations = map[string]string{RecoveredAnnotation: s.From[comp]}
		out[comp+".yaml"] = p
	}
	return out, nil
}

// RecoveredAnnotation marks a static pod that recover wrote, and says
// where its spec came from.
const RecoveredAnnotation = "selfhost.dev/recovered-from"

// Files maps each volume copy's path under dir to its content.
func (s *Source) Files(dir string) map[string][]byte {
	out := map[string][]byte{}
	for comp, vols := range s.Volumes {
		for vol, files := range vols {
			for p, data := range files {
				out[filepath.Join(dir, comp, vol, p)] = data
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kindOf(resource string) string {
	if resource == "secrets" {
		return "Secret"
	}
	return "ConfigMap"
}
