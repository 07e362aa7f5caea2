// Package upgrade moves a self-hosted control plane to a new Kubernetes
// version, or changes its components' flags, through the API: one component
// at a time, in the order kube-apiserver, kube-controller-manager,
// kube-scheduler, kube-proxy, CoreDNS. The API server goes one node at a
// time, its new pod beside the old one on the shared port; the old pod goes
// only once the new one is Ready and that node's pod-checkpointer holds an
// inactive checkpoint of it. A component that is not Ready in time is rolled
// back to its previous revision. Each step can tell whether the cluster
// already holds its outcome, so a rerun resumes, and a rerun after success
// changes nothing.
package upgrade

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
)

// Request is what the user asks for: a Kubernetes version, flag changes, or both.
type Request struct {
	// Version is the Kubernetes version to move to (vX.Y.Z); empty keeps
	// each component's.
	Version string
	// Set holds flag changes: component -> flag name (no dashes) -> value.
	Set map[string]map[string]string
}

// Component is one workload the upgrade changes.
type Component struct {
	Name string // the workload's name in kube.Namespace, also its container's
	Kind string // DaemonSet or Deployment
	// Kubernetes: its image is tagged with the Kubernetes version.
	Kubernetes bool
	// Settable: --set may change its flags.
	Settable bool
}

// Components, in the order the upgrade takes them.
var Components = []Component{
	{Name: "kube-apiserver", Kind: "DaemonSet", Kubernetes: true, Settable: true},
	{Name: "kube-controller-manager", Kind: "Deployment", Kubernetes: true, Settable: true},
	{Name: "kube-scheduler", Kind: "Deployment", Kubernetes: true, Settable: true},
	{Name: "kube-proxy", Kind: "DaemonSet", Kubernetes: true},
	{Name: "coredns", Kind: "Deployment"},
}

// managedFlags are flags the self-hosted API server's hand-overs depend on,
// or that differ per node: --set may not change them.
var managedFlags = map[string]string{
	"permit-port-sharing": "every API server hand-over shares port 6443",
	"bind-address":        "the checkpoint and its parent split the port by address",
	"advertise-address":   "each node advertises its own address",
	"secure-port":         "the load balancer, the probes and the checkpoints use 6443",
}

var flagName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ParseSet reads --set values of the form <component>.<flag>=<value>.
func ParseSet(values []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, v := range values {
		key, value, ok := strings.Cut(v, "=")
		comp, flag, dot := strings.Cut(key, ".")
		if !ok || !dot {
			return nil, fmt.Errorf("--set %q is not <component>.<flag>=<value>, such as kube-apiserver.audit-log-maxage=7", v)
		}
		i := slices.IndexFunc(Components, func(c Component) bool { return c.Name == comp })
		if i < 0 || !Components[i].Settable {
			return nil, fmt.Errorf("--set %q: the component must be kube-apiserver, kube-controller-manager or kube-scheduler", v)
		}
		flag = strings.TrimLeft(flag, "-")
		if !flagName.MatchString(flag) {
			return nil, fmt.Errorf("--set %q: %q is not a flag name", v, flag)
		}
		if why, ok := managedFlags[flag]; ok && comp == "kube-apiserver" {
			return nil, fmt.Errorf("--set %q: upgrade keeps --%s as it is (%s)", v, flag, why)
		}
		if strings.ContainsAny(value, "\n\r") {
			return nil, fmt.Errorf("--set %s.%s: the value may not span lines", comp, flag)
		}
		if out[comp] == nil {
			out[comp] = map[string]string{}
		}
		out[comp][flag] = value
	}
	return out, nil
}

// ParseVersion accepts vX.Y.Z (the v is optional) and returns it with the v.
func ParseVersion(s string) (string, error) {
	v, err := version.ParseSemantic(strings.TrimPrefix(s, "v"))
	if err != nil || v.PreRelease() != "" || v.BuildMetadata() != "" {
		return "", fmt.Errorf("--kubernetes-version %q is not a release such as %s", s, images.KubernetesVersion)
	}
	return "v" + v.String(), nil
}

// FlagChange is one flag's old and new value; From is empty for a new flag.
type FlagChange struct {
	Name, From, To string
	Added          bool
}

// Change is what the upgrade does to one component's pod template.
type Change struct {
	Component          string
	ImageFrom, ImageTo string // equal when the image stays
	Flags              []FlagChange
}

// Empty reports whether the component stays as it is.
func (c Change) Empty() bool { return c.ImageFrom == c.ImageTo && len(c.Flags) == 0 }

// String is the change as the dry run prints it, one line each.
func (c Change) String() string {
	if c.Empty() {
		return c.Component + ": no change"
	}
	var b strings.Builder
	b.WriteString(c.Component + ":")
	if c.ImageFrom != c.ImageTo {
		fmt.Fprintf(&b, "\n  image  %s -> %s", c.ImageFrom, c.ImageTo)
	}
	for _, f := range c.Flags {
		if f.Added {
			fmt.Fprintf(&b, "\n  flag   +--%s=%s", f.Name, f.To)
		} else {
			fmt.Fprintf(&b, "\n  flag   --%s=%s -> --%s=%s", f.Name, f.From, f.Name, f.To)
		}
	}
	return b.String()
}

// Apply returns the pod template with the request applied to the
// component's container, and what changed. It is pure: the same template
// and request give the same result, and a template that already holds the
// request gives an empty Change, which is how a rerun knows it is done.
func Apply(comp Component, tmpl corev1.PodTemplateSpec, req Request) (corev1.PodTemplateSpec, Change, error) {
	out := *tmpl.DeepCopy()
	ch := Change{Component: comp.Name}
	i := slices.IndexFunc(out.Spec.Containers, func(c corev1.Container) bool { return c.Name == comp.Name })
	if i < 0 && len(out.Spec.Containers) == 1 {
		i = 0
	}
	if i < 0 {
		return out, ch, fmt.Errorf("%s has no container named %s", comp.Name, comp.Name)
	}
	c := &out.Spec.Containers[i]
	ch.ImageFrom, ch.ImageTo = c.Image, c.Image
	if req.Version != "" {
		to, err := targetImage(comp, c.Image, req.Version)
		if err != nil {
			return out, ch, err
		}
		c.Image, ch.ImageTo = to, to
	}
	names := make([]string, 0, len(req.Set[comp.Name]))
	for name := range req.Set[comp.Name] {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if fc, changed := setFlag(c, name, req.Set[comp.Name][name]); changed {
			ch.Flags = append(ch.Flags, fc)
		}
	}
	return out, ch, nil
}

// targetImage is the component's image at the requested Kubernetes
// version: the same repository with the version as its tag. CoreDNS moves
// only to the version this release pairs with the default Kubernetes
// version, and never down.
func targetImage(comp Component, image, kubernetesVersion string) (string, error) {
	repo, tag := splitImage(image)
	if comp.Kubernetes {
		return repo + ":" + kubernetesVersion, nil
	}
	if comp.Name != "coredns" || minorOf(kubernetesVersion) != minorOf(images.KubernetesVersion) {
		return image, nil
	}
	have, err1 := version.ParseGeneric(tag)
	want, err2 := version.ParseGeneric(images.CoreDNSVersion)
	if err1 != nil || err2 != nil || !have.LessThan(want) {
		return image, nil
	}
	return repo + ":" + images.CoreDNSVersion, nil
}

// splitImage splits repository and tag; a digest is dropped with the tag.
func splitImage(image string) (repo, tag string) {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i], image[i+1:]
	}
	return image, ""
}

// ImageVersion is the Kubernetes version in a component image's tag, "" when the tag is not one.
func ImageVersion(image string) string {
	_, tag := splitImage(image)
	v, err := ParseVersion(tag)
	if err != nil || !strings.HasPrefix(tag, "v") {
		return ""
	}
	return v
}

func minorOf(v string) string {
	parsed, err := version.ParseGeneric(v)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d", parsed.Major(), parsed.Minor())
}

// setFlag sets --name=value in the container's command, or its args when
// the flags live there; a missing flag is appended.
func setFlag(c *corev1.Container, name, value string) (FlagChange, bool) {
	prefix := "--" + name + "="
	for _, list := range []*[]string{&c.Command, &c.Args} {
		for j, arg := range *list {
			if from, ok := strings.CutPrefix(arg, prefix); ok {
				if from == value {
					return FlagChange{}, false
				}
				(*list)[j] = prefix + value
				return FlagChange{Name: name, From: from, To: value}, true
			}
		}
	}
	list := &c.Command
	if len(c.Args) > 0 {
		list = &c.Args
	}
	*list = append(*list, prefix+value)
	return FlagChange{Name: name, To: value, Added: true}, true
}
