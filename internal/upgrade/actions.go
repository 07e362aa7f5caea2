package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/ssa"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/steps"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/verify"
)

// Annotation on the kube-apiserver DaemonSet holds the request of an
// upgrade under way, from its first step to its last: a rerun resumes that
// request and no other.
const Annotation = "selfhost.dev/upgrade"

// Action is one step of the upgrade.
type Action = steps.Action[*Context]

// Context carries what every step needs, read once.
type Context struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Status  *progress.Status
	Request Request
	// Timeout is how long a new pod may take to be Ready.
	Timeout time.Duration
	// ControlPlane names the control-plane nodes, sorted.
	ControlPlane []string

	step *progress.Step
	// skew is the API server's clock minus this machine's: pods' times
	// are the server's, and a laptop's clock may be minutes off.
	skew time.Duration
}

// now is the API server's time.
func (c *Context) now() time.Time { return time.Now().Add(c.skew) }

// Waiting reports what the running step waits on.
func (c *Context) Waiting(format string, args ...any) { c.step.Waiting(format, args...) }

// NewContext reads the control-plane nodes once.
func NewContext(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, status *progress.Status, req Request, timeout time.Duration) (*Context, error) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: kube.ControlPlaneLabel})
	if err != nil {
		return nil, fmt.Errorf("cannot list the control-plane nodes: %w", err)
	}
	c := &Context{Client: client, Dynamic: dyn, Status: status, Request: req, Timeout: timeout}
	for _, n := range nodes.Items {
		c.ControlPlane = append(c.ControlPlane, n.Name)
	}
	sort.Strings(c.ControlPlane)
	if len(c.ControlPlane) == 0 {
		return nil, fmt.Errorf("no node is labelled %s", kube.ControlPlaneLabel)
	}
	c.skew = time.Until(verify.ServerTime(ctx, client))
	return c, nil
}

// Actions are the upgrade's steps: mark it, each component in order, then
// refresh the recovery record and clear the mark.
func Actions() []Action {
	actions := []Action{&begin{}}
	for _, comp := range Components {
		actions = append(actions, &upgradeComponent{comp: comp})
	}
	return append(actions, &finish{})
}

// Run executes the actions, each within the step timeout.
func Run(ctx context.Context, c *Context, actions []Action, stepTimeout time.Duration) error {
	return steps.Run(ctx, c.Status, stepTimeout, c, actions, func(s *progress.Step) { c.step = s })
}

// Plan reports which actions would run.
func Plan(ctx context.Context, c *Context, actions []Action) error {
	return steps.Plan(ctx, c.Status, c, actions)
}

// Changes returns what the request changes in each component, in order.
func Changes(ctx context.Context, c *Context) ([]Change, error) {
	var out []Change
	for _, comp := range Components {
		w, err := getWorkload(ctx, c, comp)
		if err != nil {
			return nil, err
		}
		_, ch, err := Apply(comp, w.template(), c.Request)
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// encodeRequest is the annotation's value: the request in a stable form.
func encodeRequest(r Request) string {
	b, _ := json.Marshal(r) // maps marshal with sorted keys
	return string(b)
}

// UnderWay returns the request of an upgrade that began and did not
// finish, or nil.
func UnderWay(ctx context.Context, client kubernetes.Interface) (*Request, error) {
	ds, err := client.AppsV1().DaemonSets(kube.Namespace).Get(ctx, "kube-apiserver", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot read DaemonSet %s/kube-apiserver (is the control plane self-hosted?): %w", kube.Namespace, err)
	}
	raw, ok := ds.Annotations[Annotation]
	if !ok {
		return nil, nil
	}
	var r Request
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("annotation %s on DaemonSet kube-apiserver is not a request: %w", Annotation, err)
	}
	return &r, nil
}

// Same reports whether two requests ask for the same thing.
func Same(a, b Request) bool { return encodeRequest(a) == encodeRequest(b) }

func annotate(ctx context.Context, c *Context, value *string) error {
	v := "null"
	if value != nil {
		b, _ := json.Marshal(*value)
		v = string(b)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, Annotation, v)
	_, err := c.Client.AppsV1().DaemonSets(kube.Namespace).Patch(ctx, "kube-apiserver", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: ssa.FieldManager})
	if err != nil {
		return fmt.Errorf("cannot annotate DaemonSet kube-apiserver: %w", err)
	}
	return nil
}

// begin marks the upgrade as under way, unless there is nothing to do.
type begin struct{}

func (*begin) Name() string { return "Marking the upgrade as under way" }

func (*begin) Done(ctx context.Context, c *Context) (bool, error) {
	r, err := UnderWay(ctx, c.Client)
	if err != nil || r != nil {
		return r != nil, err
	}
	return nothingToDo(ctx, c)
}

func (*begin) Execute(ctx context.Context, c *Context) error {
	v := encodeRequest(c.Request)
	return annotate(ctx, c, &v)
}

// nothingToDo: every component holds the request, settled, and the record is current.
func nothingToDo(ctx context.Context, c *Context) (bool, error) {
	for _, comp := range Components {
		if done, err := (&upgradeComponent{comp: comp}).Done(ctx, c); err != nil || !done {
			return false, err
		}
	}
	return record.Held(ctx, c.Client)
}

// upgradeComponent moves one component to the request.
type upgradeComponent struct{ comp Component }

func (a *upgradeComponent) Name() string {
	if a.comp.Name == "kube-apiserver" {
		return "Upgrading kube-apiserver, node by node"
	}
	return "Upgrading " + a.comp.Name
}

func (a *upgradeComponent) Done(ctx context.Context, c *Context) (bool, error) {
	w, err := getWorkload(ctx, c, a.comp)
	if err != nil {
		return false, err
	}
	_, ch, err := Apply(a.comp, w.template(), c.Request)
	if err != nil || !ch.Empty() {
		return false, err
	}
	if w.ds != nil && a.comp.Name == "kube-apiserver" && !isResting(w.ds) {
		return false, nil
	}
	why, err := w.settled(ctx, c)
	return why == "", err
}

func (a *upgradeComponent) Execute(ctx context.Context, c *Context) error {
	w, err := getWorkload(ctx, c, a.comp)
	if err != nil {
		return err
	}
	tmpl, _, err := Apply(a.comp, w.template(), c.Request)
	if err != nil {
		return err
	}
	err = upgradeTo(ctx, c, a.comp, tmpl)
	var rb *rolledBack
	if errors.As(err, &rb) {
		// Over, though failed: no mark left to resume, and the record
		// holds the API server DaemonSet as the rollback left it.
		if ferr := (&finish{}).Execute(ctx, c); ferr != nil {
			return fmt.Errorf("%w (and then: %v)", err, ferr)
		}
	}
	return err
}

// finish refreshes the recovery record, which holds the API server
// DaemonSet as it now is, and clears the mark.
type finish struct{}

func (*finish) Name() string { return "Refreshing the recovery record" }

func (*finish) Done(ctx context.Context, c *Context) (bool, error) {
	r, err := UnderWay(ctx, c.Client)
	if err != nil || r != nil {
		return false, err
	}
	return record.Held(ctx, c.Client)
}

func (*finish) Execute(ctx context.Context, c *Context) error {
	if err := annotate(ctx, c, nil); err != nil {
		return err
	}
	return record.Write(ctx, c.Client, c.Dynamic)
}

// Summary names the components that change.
func Summary(changes []Change) string {
	var parts []string
	for _, ch := range changes {
		if !ch.Empty() {
			parts = append(parts, ch.Component)
		}
	}
	if len(parts) == 0 {
		return "nothing to change"
	}
	return "changes " + strings.Join(parts, ", ")
}

// Needs lists the images the request's components need on the nodes.
func Needs(changes []Change) []Needed {
	var out []Needed
	for _, ch := range changes {
		if ch.ImageFrom == ch.ImageTo {
			continue
		}
		switch ch.Component {
		case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
			out = append(out, Needed{Image: ch.ImageTo, ControlPlaneOnly: true})
		case "kube-proxy":
			out = append(out, Needed{Image: ch.ImageTo})
		}
	}
	return out
}
