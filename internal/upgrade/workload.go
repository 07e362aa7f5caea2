package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
)

// workload is a component's DaemonSet or Deployment, seen the same way.
type workload struct {
	comp Component
	ds   *appsv1.DaemonSet
	dep  *appsv1.Deployment
}

// revision is one entry of a workload's history: a DaemonSet's
// ControllerRevision or a Deployment's ReplicaSet.
type revision struct {
	name     string // the ControllerRevision's or ReplicaSet's
	number   int64
	hash     string // the pods' hash label value
	template corev1.PodTemplateSpec
}

func getWorkload(ctx context.Context, c *Context, comp Component) (*workload, error) {
	w := &workload{comp: comp}
	var err error
	if comp.Kind == "DaemonSet" {
		w.ds, err = c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, comp.Name, metav1.GetOptions{})
	} else {
		w.dep, err = c.Client.AppsV1().Deployments(kube.Namespace).Get(ctx, comp.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s %s/%s: %w", comp.Kind, kube.Namespace, comp.Name, err)
	}
	return w, nil
}

func (w *workload) template() corev1.PodTemplateSpec {
	if w.ds != nil {
		return w.ds.Spec.Template
	}
	return w.dep.Spec.Template
}

func (w *workload) selector() *metav1.LabelSelector {
	if w.ds != nil {
		return w.ds.Spec.Selector
	}
	return w.dep.Spec.Selector
}

func (w *workload) hashLabel() string {
	if w.ds != nil {
		return appsv1.ControllerRevisionHashLabelKey
	}
	return appsv1.DefaultDeploymentUniqueLabelKey
}

// apply server-side applies the whole workload with tmpl as its template;
// tune may change the rest of the spec (the API server's strategy).
func (w *workload) apply(ctx context.Context, c *Context, tmpl corev1.PodTemplateSpec, tune func(*appsv1.DaemonSet)) error {
	var obj runtime.Object
	if w.ds != nil {
		ds := &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"}, ObjectMeta: applyMeta(w.ds.ObjectMeta), Spec: *w.ds.Spec.DeepCopy()}
		ds.Spec.Template = tmpl
		if tune != nil {
			tune(ds)
		}
		obj = ds
	} else {
		dep := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: applyMeta(w.dep.ObjectMeta), Spec: *w.dep.Spec.DeepCopy()}
		dep.Spec.Template = tmpl
		obj = dep
	}
	return ssa.ApplyTyped(ctx, c.Dynamic, obj)
}

// applyMeta keeps what the owner of an object sets, not what its
// controller writes (a Deployment's revision, a DaemonSet's generation).
func applyMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	annotations := map[string]string{}
	for k, v := range m.Annotations {
		switch k {
		case "deployment.kubernetes.io/revision", "deprecated.daemonset.template.generation", corev1.LastAppliedConfigAnnotation:
		default:
			annotations[k] = v
		}
	}
	if len(annotations) == 0 {
		annotations = nil
	}
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels, Annotations: annotations}
}

// revisions lists the workload's history, oldest first; the last is current.
func (w *workload) revisions(ctx context.Context, c *Context) ([]revision, error) {
	sel, err := metav1.LabelSelectorAsSelector(w.selector())
	if err != nil {
		return nil, err
	}
	var out []revision
	if w.ds != nil {
		list, err := c.Client.AppsV1().ControllerRevisions(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, fmt.Errorf("cannot list the revisions of DaemonSet %s: %w", w.comp.Name, err)
		}
		for _, cr := range list.Items {
			if !metav1.IsControlledBy(&cr, w.ds) {
				continue
			}
			var patch struct {
				Spec struct {
					Template corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(cr.Data.Raw, &patch); err != nil {
				return nil, fmt.Errorf("cannot read revision %s: %w", cr.Name, err)
			}
			out = append(out, revision{name: cr.Name, number: cr.Revision, hash: cr.Labels[appsv1.ControllerRevisionHashLabelKey], template: patch.Spec.Template})
		}
	} else {
		list, err := c.Client.AppsV1().ReplicaSets(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, fmt.Errorf("cannot list the ReplicaSets of Deployment %s: %w", w.comp.Name, err)
		}
		for _, rs := range list.Items {
			if !metav1.IsControlledBy(&rs, w.dep) {
				continue
			}
			n, _ := strconv.ParseInt(rs.Annotations["deployment.kubernetes.io/revision"], 10, 64)
			tmpl := *rs.Spec.Template.DeepCopy()
			delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
			out = append(out, revision{name: rs.Name, number: n, hash: rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey], template: tmpl})
		}
	}
	slices.SortFunc(out, func(a, b revision) int { return int(a.number - b.number) })
	return out, nil
}

// synced reports whether the controller has seen the workload's latest spec,
// so the last revision is the current template's.
func (w *workload) synced() bool {
	if w.ds != nil {
		return w.ds.Status.ObservedGeneration >= w.ds.Generation
	}
	return w.dep.Status.ObservedGeneration >= w.dep.Generation
}

// rollout is what a workload runs, read once: the hash of its current
// revision and the pods its controller owns.
type rollout struct {
	current string
	label   string       // the pods' hash label
	pods    []corev1.Pod // running, not being deleted
	// stopping are being deleted and still in their grace period.
	stopping []corev1.Pod
}

func (r *rollout) isCurrent(p *corev1.Pod) bool { return p.Labels[r.label] == r.current }

// observe reads the workload's rollout; nil while its controller has not
// seen the latest spec, so that the last revision is not yet its own. Only
// pods the workload controls count: a checkpoint's mirror pod carries the
// same labels but no controller.
func (w *workload) observe(ctx context.Context, c *Context) (*rollout, error) {
	if !w.synced() {
		return nil, nil
	}
	revs, err := w.revisions(ctx, c)
	if err != nil || len(revs) == 0 {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(w.selector())
	if err != nil {
		return nil, err
	}
	list, err := c.Client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("cannot list the pods of %s: %w", w.comp.Name, err)
	}
	r := &rollout{current: revs[len(revs)-1].hash, label: w.hashLabel()}
	for _, p := range list.Items {
		switch {
		case !w.controls(&p, revs):
		case p.DeletionTimestamp != nil:
			r.stopping = append(r.stopping, p)
		case p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed:
			r.pods = append(r.pods, p)
		}
	}
	return r, nil
}

// controls reports whether the workload owns the pod: a DaemonSet's pod
// directly, a Deployment's through one of its ReplicaSets.
func (w *workload) controls(p *corev1.Pod, revs []revision) bool {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return false
	}
	if w.ds != nil {
		return ref.UID == w.ds.UID
	}
	return ref.Kind == "ReplicaSet" && slices.ContainsFunc(revs, func(r revision) bool { return r.name == ref.Name })
}

// settled says what keeps the workload from running only its current
// template, Ready, in every place it should: "" when nothing.
func (w *workload) settled(ctx context.Context, c *Context) (string, error) {
	r, err := w.observe(ctx, c)
	if err != nil {
		return "", err
	}
	return w.settledBy(r), nil
}

// settledBy is settled for a rollout already observed.
func (w *workload) settledBy(r *rollout) string {
	if r == nil {
		return "its controller to see the new spec"
	}
	want := 0
	if w.ds != nil {
		st := w.ds.Status
		want = int(st.DesiredNumberScheduled)
		if st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberReady < st.DesiredNumberScheduled {
			return fmt.Sprintf("%d of %d pods updated, %d Ready", st.UpdatedNumberScheduled, want, st.NumberReady)
		}
	} else {
		st := w.dep.Status
		want = int(ptrOr(w.dep.Spec.Replicas, 1))
		if int(st.UpdatedReplicas) != want || int(st.ReadyReplicas) != want || int(st.AvailableReplicas) != want {
			return fmt.Sprintf("%d of %d replicas updated, %d Ready", st.UpdatedReplicas, want, st.ReadyReplicas)
		}
	}
	for _, p := range r.pods {
		if !r.isCurrent(&p) {
			return fmt.Sprintf("pod %s of an earlier revision on %s to go", p.Name, p.Spec.NodeName)
		}
	}
	if len(r.pods) != want {
		return fmt.Sprintf("%d of %d pods", len(r.pods), want)
	}
	return ""
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
