// Package pivot turns a running kubeadm-shaped control plane into a
// self-hosted one, in place, through the API. Each step is a small Action
// that can tell whether it is already done, so a rerun after success does
// nothing and a rerun after an interruption resumes where it stopped.
package pivot

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/progress"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/steps"
)

// Action is one step of the pivot.
type Action = steps.Action[*Context]

// Context carries what every action needs.
type Context struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Status  *progress.Status
	Options Options
	Cluster *Cluster

	step *progress.Step
	// digests pins node-agent images: image -> image@sha256 once a node has
	// reported the digest it runs. Actions that run together share it.
	digests   map[string]string
	digestsMu sync.Mutex
}

// NewContext completes the discovered configuration with the user's
// choices, once, so that every action reads the same one.
func NewContext(client kubernetes.Interface, dyn dynamic.Interface, status *progress.Status, o Options, cl *Cluster) *Context {
	cl.Images = images.Upstream(cl.KubernetesVersion, o.CheckpointerImage)
	cl.AppsNamespace = o.AppsNamespace
	cl.KubeletInsecureTLS = o.MetricsKubeletInsecureTLS
	cl.ControlPlaneReplicas = len(cl.ControlPlane)
	return &Context{Client: client, Dynamic: dyn, Status: status, Options: o, Cluster: cl}
}

// Waiting reports what the running action waits on.
func (c *Context) Waiting(format string, args ...any) { c.step.Waiting(format, args...) }

// Options are the user's choices.
type Options struct {
	CheckpointerImage string
	ToolsImage        string // runs the short-lived node agents; needs sh, cp, mv, tr, awk, cat, sleep
	StepTimeout       time.Duration
	AppsNamespace     string
	// Certs is where the API server's credentials come from: CertsSecret or CertsHostPath.
	Certs string
	// MetricsKubeletInsecureTLS lets metrics-server accept the kubelets'
	// self-signed serving certificates, as kind's are.
	MetricsKubeletInsecureTLS bool
}

// Run executes the actions in order, skipping those already done. Each
// action gets its own timeout.
func Run(ctx context.Context, c *Context, actions []Action) error {
	return steps.Run(ctx, c.Status, c.Options.StepTimeout, c, actions, func(s *progress.Step) { c.step = s })
}

// Plan reports, without changing anything, which actions would run.
func Plan(ctx context.Context, c *Context, actions []Action) error {
	return steps.Plan(ctx, c.Status, c, actions)
}
