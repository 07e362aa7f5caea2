// Package recovery brings a self-hosted control plane back when no API
// server is left and no checkpoint can start one, as bootkube recover did:
// on a control-plane host, it reads the API server's spec and credentials
// straight from the local etcd, runs that API server as a static pod, lets
// the self-hosted one come back through it, then removes it.
package recovery

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/atomicfile"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pivot"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/steps"
)

// Options are the user's choices.
type Options struct {
	// PodManifestDir is the kubelet's static pod directory.
	PodManifestDir string
	// Dir holds the copies of the API server's Secrets and ConfigMaps.
	Dir string
	// NodeName is this host's node.
	NodeName    string
	StepTimeout time.Duration
}

// DefaultDir is where the volume copies go, owner-only.
const DefaultDir = "/etc/kubernetes/selfhost-recover"

// Context carries what every action needs.
type Context struct {
	Options Options
	Source  *Source
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Status  *progress.Status

	// manifests are the static pods, by file name (kubeadm's, so that a
	// kubelet and a person find them where they look).
	manifests map[string][]byte
	// began is when this run started: DaemonSet pods older than that were
	// created while this node's kubelet reached no API server.
	began time.Time
	// probed, answered and serving are AtStart's answer.
	probed, answered, serving bool
	step                      *progress.Step
}

// NewContext renders the static manifests once.
func NewContext(o Options, s *Source, client kubernetes.Interface, dyn dynamic.Interface, status *progress.Status) (*Context, error) {
	pods, err := s.StaticPods(o.Dir)
	if err != nil {
		return nil, err
	}
	c := &Context{Options: o, Source: s, Client: client, Dynamic: dyn, Status: status, manifests: map[string][]byte{}, began: time.Now()}
	for file, pod := range pods {
		if c.manifests[file], err = yaml.Marshal(pod); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Manifests are the static pods recover writes, by file name.
func (c *Context) Manifests() map[string][]byte { return c.manifests }

// Waiting reports what the running action waits on.
func (c *Context) Waiting(format string, args ...any) { c.step.Waiting(format, args...) }

// Action is one step of recover.
type Action = steps.Action[*Context]

// Actions is the whole recovery, in order.
func Actions() []Action {
	return []Action{&writeVolumeCopies{}, &writeStaticPods{}, &awaitAPI{}, &recreateDaemonSets{}, &awaitSelfHosted{}, &removeStaticPods{}}
}

// Run recovers, skipping what is already done.
func Run(ctx context.Context, c *Context) error {
	return steps.Run(ctx, c.Status, c.Options.StepTimeout, c, Actions(), func(s *progress.Step) { c.step = s })
}

// pollInterval is between reads of what a step waits for.
const pollInterval = 500 * time.Millisecond

// OursOnDisk reports whether this host runs a static pod recover wrote,
// and refuses a foreign static manifest in the place of one.
func (c *Context) OursOnDisk() (bool, error) {
	ours := false
	for _, file := range sortedKeys(c.manifests) {
		path := filepath.Join(c.Options.PodManifestDir, file)
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		var p corev1.Pod
		if err := yaml.Unmarshal(data, &p); err != nil || p.Annotations[RecoveredAnnotation] == "" {
			return false, fmt.Errorf("%s is a static pod that recover did not write; move it away if nothing can start from it", path)
		}
		ours = true
	}
	return ours, nil
}

// AtStart is what the API said before this run wrote anything: whether it
// answered, and whether this node's self-hosted API server was Ready and
// checkpointed. It is asked once per run: nothing it depends on changes
// until the run writes, and a silent API costs a timeout each time.
func (c *Context) AtStart(ctx context.Context) (answered, serving bool) {
	if !c.probed {
		c.probed = true
		if c.answered = c.Answers(ctx); c.answered {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			c.serving = selfHostedHere(ctx, c) == ""
		}
	}
	return c.answered, c.serving
}

// Settled reports whether recover has nothing left to do on this host: no
// static pod of its own, no copies, and the self-hosted API server Ready
// and checkpointed here when the run began.
func (c *Context) Settled(ctx context.Context) bool {
	if ours, err := c.OursOnDisk(); ours || err != nil {
		return false
	}
	if _, err := os.Stat(c.Options.Dir); !os.IsNotExist(err) {
		return false
	}
	_, serving := c.AtStart(ctx)
	return serving
}

// writeVolumeCopies writes the Secrets and ConfigMaps the static pods
// mount, as read from etcd, to owner-only files.
type writeVolumeCopies struct{}

func (*writeVolumeCopies) Name() string {
	return "Writing the Secrets and ConfigMaps the static pods mount, read from etcd, to owner-only files"
}

func (*writeVolumeCopies) Done(ctx context.Context, c *Context) (bool, error) {
	for p, data := range c.Source.Files(c.Options.Dir) {
		if have, err := os.ReadFile(p); err != nil || !bytes.Equal(have, data) {
			return c.Settled(ctx), nil
		}
	}
	return true, nil
}

func (*writeVolumeCopies) Execute(_ context.Context, c *Context) error {
	files := c.Source.Files(c.Options.Dir)
	for _, p := range sortedKeys(files) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := atomicfile.Write(p, files[p], 0o600, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// writeStaticPods writes the static kube-apiserver and, when etcd holds its
// Deployment, kube-controller-manager.
type writeStaticPods struct{}

func (*writeStaticPods) Name() string {
	return "Writing a static kube-apiserver and kube-controller-manager from their self-hosted specs"
}

func (*writeStaticPods) Done(ctx context.Context, c *Context) (bool, error) {
	for file, data := range c.manifests {
		if have, err := os.ReadFile(filepath.Join(c.Options.PodManifestDir, file)); err != nil || !bytes.Equal(have, data) {
			return c.Settled(ctx), nil
		}
	}
	return true, nil
}

func (*writeStaticPods) Execute(_ context.Context, c *Context) error {
	for _, file := range sortedKeys(c.manifests) {
		if err := atomicfile.Write(filepath.Join(c.Options.PodManifestDir, file), c.manifests[file], 0o600, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// awaitAPI waits for the API to answer: the static API server is the only one.
type awaitAPI struct{}

func (*awaitAPI) Name() string { return "Waiting for the API to answer /readyz" }

func (*awaitAPI) Done(ctx context.Context, c *Context) (bool, error) {
	return c.Answers(ctx), nil
}

// Answers reports whether the API answers /readyz within a short time.
func (c *Context) Answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil && string(bytes.TrimSpace(body)) == "ok"
}

func (*awaitAPI) Execute(ctx context.Context, c *Context) error {
	c.Waiting("the kubelet on %s to start the static kube-apiserver, and /readyz three times in a row", c.Options.NodeName)
	return kube.WaitReadyz(ctx, c.Client, 3, pollInterval)
}

// recreateDaemonSets creates each recorded DaemonSet the API lacks.
type recreateDaemonSets struct{}

func (*recreateDaemonSets) Name() string {
	return "Creating the missing kube-apiserver and pod-checkpointer DaemonSets"
}

func (*recreateDaemonSets) Done(ctx context.Context, c *Context) (bool, error) {
	missing, err := c.missingDaemonSets(ctx)
	return err == nil && len(missing) == 0, err
}

func (*recreateDaemonSets) Execute(ctx context.Context, c *Context) error {
	missing, err := c.missingDaemonSets(ctx)
	if err != nil {
		return err
	}
	for _, ds := range missing {
		if err := ssa.ApplyTyped(ctx, c.Dynamic, record.Clean(ds)); err != nil {
			return err
		}
	}
	return nil
}

// missingDaemonSets are the recorded DaemonSets the API does not hold.
func (c *Context) missingDaemonSets(ctx context.Context) ([]*appsv1.DaemonSet, error) {
	var missing []*appsv1.DaemonSet
	for _, ds := range []*appsv1.DaemonSet{c.Source.APIServer, c.Source.Checkpointer} {
		if ds == nil {
			continue
		}
		_, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, ds.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, ds)
		case err != nil:
			return nil, fmt.Errorf("cannot read DaemonSet %s/%s: %w", kube.Namespace, ds.Name, err)
		}
	}
	return missing, nil
}

// awaitSelfHosted waits for a Ready self-hosted API server on this node
// with an inactive checkpoint.
type awaitSelfHosted struct{}

func (*awaitSelfHosted) Name() string {
	return "Waiting for the self-hosted kube-apiserver and its checkpoint on this node"
}

func (*awaitSelfHosted) Done(ctx context.Context, c *Context) (bool, error) {
	return selfHostedHere(ctx, c) == "", nil
}

func (*awaitSelfHosted) Execute(ctx context.Context, c *Context) error {
	c.Waiting("the kubelet on %s to reach the API again (its lease renewed)", c.Options.NodeName)
	if err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		ready, err := c.KubeletReachesAPI(ctx)
		return err == nil && ready, nil
	}); err != nil {
		return fmt.Errorf("the kubelet on %s did not renew its lease: %w", c.Options.NodeName, err)
	}
	c.replaceStalePods(ctx)
	return wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		why := selfHostedHere(ctx, c)
		if why != "" {
			c.Waiting("%s", why)
		}
		return why == "", nil
	})
}

// replaceStalePods deletes this node's DaemonSet pods that are not Ready
// and were created before this run: their kubelet tried to mount their
// volumes while it reached no API server, and waits out a back-off of up to
// two minutes before it tries again. The DaemonSets create fresh ones.
func (c *Context) replaceStalePods(ctx context.Context) {
	pods, err := c.Client.CoreV1().Pods(kube.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + c.Options.NodeName})
	if err != nil {
		return
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		stale := p.Spec.NodeName == c.Options.NodeName && !kube.PodReady(p) && p.CreationTimestamp.Time.Before(c.began) && p.DeletionTimestamp == nil
		if !stale || !kube.OwnedBy(p, "DaemonSet", "kube-apiserver") && !kube.OwnedBy(p, "DaemonSet", "pod-checkpointer") {
			continue
		}
		if err := c.Client.CoreV1().Pods(kube.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}); err == nil {
			c.Waiting("the DaemonSet to replace %s, which was created while this node reached no API server", p.Name)
		}
	}
}

func selfHostedHere(ctx context.Context, c *Context) string {
	return pivot.SelfHostedAPIServerOn(ctx, c.Client, c.Options.NodeName)
}

// removeStaticPods removes the static pods and, once the API answers
// without them, the copies of their Secrets and ConfigMaps.
type removeStaticPods struct{}

func (*removeStaticPods) Name() string {
	return "Removing the static pods and the copies of their credentials"
}

func (*removeStaticPods) Done(_ context.Context, c *Context) (bool, error) {
	ours, err := c.OursOnDisk()
	if err != nil || ours {
		return false, err
	}
	_, err = os.Stat(c.Options.Dir)
	return os.IsNotExist(err), nil
}

func (*removeStaticPods) Execute(ctx context.Context, c *Context) error {
	for _, file := range sortedKeys(c.manifests) {
		if err := os.Remove(filepath.Join(c.Options.PodManifestDir, file)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	for _, comp := range sortedKeys(c.Source.Static) {
		mirror := comp + "-" + c.Options.NodeName
		c.Waiting("the kubelet to stop %s", mirror)
		err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
			_, err := c.Client.CoreV1().Pods(kube.Namespace).Get(ctx, mirror, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return fmt.Errorf("static %s did not stop: %w", comp, err)
		}
	}
	c.Waiting("the self-hosted API server to answer /readyz five times in a row")
	if err := kube.WaitReadyz(ctx, c.Client, 5, pollInterval); err != nil {
		return fmt.Errorf("the API does not answer without the static API server: %w", err)
	}
	return os.RemoveAll(c.Options.Dir)
}

// KubeletReachesAPI reports whether this node's kubelet renewed its lease
// within leaseFresh. Its Ready condition cannot tell: after an outage that
// took the controller manager down too, it still says Ready from before.
func (c *Context) KubeletReachesAPI(ctx context.Context) (bool, error) {
	l, err := c.Client.CoordinationV1().Leases("kube-node-lease").Get(ctx, c.Options.NodeName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("cannot read the lease of node %s: %w", c.Options.NodeName, err)
	}
	return l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) < leaseFresh, nil
}

// leaseFresh is kube-controller-manager's default --node-monitor-grace-period:
// a kubelet renews its lease every 10 s.
const leaseFresh = 40 * time.Second

// NotReadyControlPlane names the control-plane nodes that are not Ready, if
// the API says.
func (c *Context) NotReadyControlPlane(ctx context.Context) []string {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: kube.ControlPlaneLabel})
	if err != nil {
		return nil
	}
	var out []string
	for i := range nodes.Items {
		if !kube.NodeReady(&nodes.Items[i]) {
			out = append(out, nodes.Items[i].Name)
		}
	}
	return out
}
