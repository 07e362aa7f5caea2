package checkpointer

import (
	"bytes"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/checkpointtest"
)

// renderManifest renders the DaemonSet manifest the way the renderer does:
// missingkey=error, then a strict decode of every document.
func renderManifest(t *testing.T) []runtime.Object {
	t.Helper()
	src, err := os.ReadFile("../../manifests/pod-checkpointer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Readable as YAML before rendering too.
	for _, doc := range strings.Split(string(src), "\n---\n") {
		var v any
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("the template is not YAML: %v", err)
		}
	}
	tmpl, err := template.New("m").Option("missingkey=error").Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = tmpl.Execute(&out, map[string]any{
		"Namespace":         "kube-system",
		"Images":            map[string]string{"Checkpointer": "ghcr.io/kubectl-selfhost/pod-checkpointer:v0.1.0"},
		"KubernetesVersion": "v1.37.2",
	})
	if err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for _, doc := range strings.Split(out.String(), "\n---\n") {
		obj, _, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("document does not decode strictly: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestManifest(t *testing.T) {
	objs := renderManifest(t)
	var ds *appsv1.DaemonSet
	var role *rbacv1.Role
	var kinds []string
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.DaemonSet:
			ds = v
		case *rbacv1.Role:
			role = v
		case *rbacv1.ClusterRole:
			// Cluster-wide, it may only read nodes: whether a DaemonSet targets its node.
			want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}}
			if !reflect.DeepEqual(v.Rules, want) {
				t.Errorf("cluster-wide RBAC grants %+v; want only get on nodes", v.Rules)
			}
		case *rbacv1.ClusterRoleBinding:
			if v.RoleRef.Kind != "ClusterRole" || v.RoleRef.Name != "pod-checkpointer" || len(v.Subjects) != 1 || v.Subjects[0].Name != "pod-checkpointer" {
				t.Errorf("cluster-wide binding %+v; want the pod-checkpointer ClusterRole for its service account only", v)
			}
		case *corev1.Secret:
			t.Errorf("Secret %s: no token that never expires", v.Name)
		case *corev1.ConfigMap:
			if v.Name != checkpoint.StatusConfigMap {
				t.Errorf("ConfigMap %s, want %s", v.Name, checkpoint.StatusConfigMap)
			}
		}
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
	}
	if got := strings.Join(kinds, ","); got != "ServiceAccount,ConfigMap,Role,RoleBinding,ClusterRole,ClusterRoleBinding,DaemonSet" {
		t.Fatalf("documents = %s", got)
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			ownToken := v == "create" && slices.Equal(r.Resources, []string{"serviceaccounts/token"}) && slices.Equal(r.ResourceNames, []string{"pod-checkpointer"})
			if v == "*" || v == "create" && !ownToken || v == "update" || v == "delete" {
				t.Errorf("role grants %s on %v %v", v, r.Resources, r.ResourceNames)
			}
		}
		if r.Verbs[0] == "patch" && (len(r.ResourceNames) != 1 || r.ResourceNames[0] != checkpoint.StatusConfigMap) {
			t.Errorf("patch is not limited to the status ConfigMap: %+v", r)
		}
		if slices.Contains(r.Resources, "secrets") && !slices.Equal(r.ResourceNames, []string{"kube-apiserver"}) {
			t.Errorf("it may read Secrets other than the API server's: %+v", r)
		}
		if slices.Contains(r.Resources, "configmaps") && len(r.ResourceNames) == 0 {
			t.Errorf("it may %v every ConfigMap", r.Verbs)
		}
	}

	spec := ds.Spec.Template.Spec
	if ds.Name != "pod-checkpointer" || ds.Spec.Template.Annotations[checkpoint.CheckpointAnnotation] != "true" {
		t.Error("the DaemonSet does not checkpoint itself")
	}
	if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" || spec.NodeSelector["node-role.kubernetes.io/control-plane"] != "" {
		t.Error("not a host-network, node-critical pod on control-plane nodes")
	}
	tolerated := map[string]corev1.TaintEffect{}
	for _, tol := range spec.Tolerations {
		tolerated[tol.Key] = tol.Effect
	}
	if tolerated["node-role.kubernetes.io/control-plane"] != corev1.TaintEffectNoSchedule || tolerated["node.kubernetes.io/unreachable"] != corev1.TaintEffectNoExecute {
		t.Errorf("tolerations = %v", spec.Tolerations)
	}
	c := spec.Containers[0]
	if c.ImagePullPolicy != corev1.PullIfNotPresent || c.Image != "ghcr.io/kubectl-selfhost/pod-checkpointer:v0.1.0" {
		t.Errorf("image = %s (%s)", c.Image, c.ImagePullPolicy)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.ValueFrom.FieldRef.FieldPath
	}
	if env["CHECKPOINT_OF"] != "metadata.annotations['"+checkpoint.CheckpointOfAnnotation+"']" || env["POD_NAME"] == "" || env["NODE_NAME"] == "" || env["POD_NAMESPACE"] == "" {
		t.Errorf("env = %v", env)
	}
	hostPaths := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.HostPath.Path] = true
		}
	}
	// Only what it writes, the kubelet's kubeconfig read-only, and the runtime.
	want := map[string]bool{"/etc/kubernetes/manifests": true, "/etc/kubernetes/inactive-manifests": true, "/etc/kubernetes/checkpoint-secrets": true,
		"/etc/kubernetes/pod-checkpointer.lock": true, "/etc/kubernetes/kubelet.conf": true, "/run/containerd/containerd.sock": true}
	if !maps.Equal(hostPaths, want) {
		t.Errorf("hostPaths = %v, want %v", hostPaths, want)
	}
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.MountPath == "/etc/kubernetes/kubelet.conf" && !m.ReadOnly {
			t.Error("the kubelet's kubeconfig is writable")
		}
	}
	if !slices.Contains(c.Args, "--listen=127.0.0.1:10266") || c.ReadinessProbe.HTTPGet.Host != "127.0.0.1" {
		t.Errorf("health and metrics are not on loopback only: %v, probe host %q", c.Args, c.ReadinessProbe.HTTPGet.Host)
	}

	// Its own checkpoint must be a valid static pod.
	pod := &corev1.Pod{ObjectMeta: ds.Spec.Template.ObjectMeta, Spec: spec}
	pod.Name, pod.Namespace = "pod-checkpointer-abcde", "kube-system"
	cp, copies, err := checkpoint.Sanitize(pod, "/etc/kubernetes/checkpoint-secrets")
	if err != nil {
		t.Fatal(err)
	}
	if bad := checkpointtest.Inadmissible(cp); len(bad) > 0 {
		t.Fatalf("its own checkpoint has %v", bad)
	}
	if len(copies) != 1 || copies[0].Sources[0].Kind != checkpoint.TokenKind || copies[0].Sources[0].Name != "pod-checkpointer" ||
		copies[0].Sources[1].Name != "kube-root-ca.crt" {
		t.Fatalf("copies = %+v, want its kept token and the cluster CA", copies)
	}
	for _, src := range copies[0].Sources {
		if src.Kind == "Secret" || src.Kind == "ConfigMap" && !slices.Contains(roleNames(role, "configmaps", "get"), src.Name) {
			t.Errorf("its own copy reads %s %s, which its Role does not grant", src.Kind, src.Name)
		}
	}
	// Every flag in args must be one the command defines.
	main, err := os.ReadFile("../../cmd/pod-checkpointer/main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Args {
		name := regexp.MustCompile(`^--([a-z-]+)=`).FindStringSubmatch(a)
		if name == nil || !strings.Contains(string(main), `"`+name[1]+`"`) {
			t.Errorf("argument %s is not a flag of cmd/pod-checkpointer", a)
		}
	}
}

// roleNames lists the names a Role grants verb on resource for.
func roleNames(role *rbacv1.Role, resource, verb string) []string {
	var names []string
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			names = append(names, r.ResourceNames...)
		}
	}
	return names
}
