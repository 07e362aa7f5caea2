package pivot

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/cluster"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
)

// applyingClient is a fake dynamic client whose server-side apply merges the
// applied fields into the stored object and records the manager, and stores
// nothing on a dry run.
func applyingClient() *dynamicfake.FakeDynamicClient {
	client := dynamicfake.NewSimpleDynamicClient(scheme.Scheme)
	client.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchActionImpl)
		if p.GetPatchType() != types.ApplyPatchType {
			return false, nil, nil
		}
		var applied map[string]any
		if err := json.Unmarshal(p.GetPatch(), &applied); err != nil {
			return true, nil, err
		}
		gvr, ns, name := p.GetResource(), p.GetNamespace(), p.GetName()
		live, err := client.Tracker().Get(gvr, ns, name, metav1.GetOptions{})
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return true, nil, err
		}
		merged := applied
		if exists {
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(live)
			if err != nil {
				return true, nil, err
			}
			merged = mergeFields(m, applied)
		}
		obj := &unstructured.Unstructured{Object: merged}
		obj.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: p.PatchOptions.FieldManager, Operation: metav1.ManagedFieldsOperationApply}})
		switch {
		case len(p.PatchOptions.DryRun) > 0:
		case exists:
			err = client.Tracker().Update(gvr, obj, ns)
		default:
			err = client.Tracker().Create(gvr, obj, ns)
		}
		return true, obj, err
	})
	return client
}

// mergeFields sets every field of applied on live, maps merged, lists replaced.
func mergeFields(live, applied map[string]any) map[string]any {
	for k, v := range applied {
		if am, ok := v.(map[string]any); ok {
			if lm, ok := live[k].(map[string]any); ok {
				live[k] = mergeFields(lm, am)
				continue
			}
		}
		live[k] = v
	}
	return live
}

// An add-on step is done only while the cluster holds what the manifests
// render now: a changed manifest (here, metrics-server's kubelet flags)
// makes the step run again, and once applied it is skipped again. Asking
// changes nothing.
func TestAddonsAreDoneOnlyWhileTheClusterHoldsTheirContent(t *testing.T) {
	ctx := context.Background()
	client := applyingClient()
	lb, err := url.Parse("https://lb:6443")
	if err != nil {
		t.Fatal(err)
	}
	c := &Context{Dynamic: client, Cluster: &Cluster{Config: cluster.Config{
		KubernetesVersion: "v1.37.2", Endpoint: lb, Images: images.Upstream("v1.37.2", "checkpointer:test"),
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16", ClusterDomain: "cluster.local", DNSServiceIP: "10.96.0.10",
		ControlPlaneReplicas: 3,
	}}}
	step := &installAddons{}
	done := func(want bool, when string) {
		t.Helper()
		got, err := step.Done(ctx, c)
		if err != nil || got != want {
			t.Fatalf("%s: Done = %v, %v; want %v", when, got, err, want)
		}
	}
	done(false, "on a cluster without the add-ons")
	if err := applyTemplates(ctx, c, step.names(c)...); err != nil {
		t.Fatal(err)
	}
	done(true, "right after applying them")

	c.Cluster.KubeletInsecureTLS = true
	done(false, "after metrics-server's manifest changed")
	done(false, "asked twice") // the dry run stored nothing
	if err := applyTemplates(ctx, c, step.names(c)...); err != nil {
		t.Fatal(err)
	}
	done(true, "after applying the changed manifest")
}
