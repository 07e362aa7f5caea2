package pivot

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
)

// shareStaticPort rewrites one node's static pod to use --permit-port-sharing,
// so the self-hosted pod can bind beside it. The kubelet restarts it once.
type shareStaticPort struct{ component, node string }

func (a *shareStaticPort) Name() string {
	return fmt.Sprintf("Letting static %s on %s share its port", a.component, a.node)
}

func (a *shareStaticPort) Done(ctx context.Context, c *Context) (bool, error) {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	if err != nil {
		return false, err
	}
	return m == nil || SharesPort(m), nil
}

func (a *shareStaticPort) Execute(ctx context.Context, c *Context) error {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	if err != nil || m == nil {
		return err
	}
	static, err := PortSharingStatic(a.component, m)
	if err != nil {
		return err
	}
	manifest, err := encodeYAML(static)
	if err != nil {
		return err
	}
	file := a.component + ".yaml"
	if _, err := runAgent(ctx, c, agentJob{Node: a.node, Purpose: "share-port-" + a.component, Script: replaceStaticScript(file, manifest), Payload: map[string]string{file: manifest}}); err != nil {
		return err
	}
	c.Waiting("the kubelet on %s to restart static %s with port sharing, Ready", a.node, a.component)
	if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		m, err := MirrorPod(ctx, c.Client, a.component, a.node)
		return err == nil && m != nil && SharesPort(m) && kube.PodReady(m), nil
	}); err != nil {
		return fmt.Errorf("static %s on %s did not come back Ready with port sharing: %w", a.component, a.node, err)
	}
	return waitAPIHealthy(ctx, c)
}

// removeStatic moves one node's static manifest into the backup directory,
// then waits for its mirror pod to go and the API to stay healthy.
type removeStatic struct{ component, node string }

func (a *removeStatic) Name() string {
	return fmt.Sprintf("Removing static %s from %s", a.component, a.node)
}

func (a *removeStatic) Done(ctx context.Context, c *Context) (bool, error) {
	m, err := MirrorPod(ctx, c.Client, a.component, a.node)
	return err == nil && m == nil, err
}

func (a *removeStatic) Execute(ctx context.Context, c *Context) error {
	file := a.component + ".yaml"
	if _, err := runAgent(ctx, c, agentJob{Node: a.node, Purpose: "remove-" + a.component, Script: removeStaticScript(file)}); err != nil {
		return err
	}
	c.Waiting("the mirror pod of %s on %s to vanish", a.component, a.node)
	if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		m, err := MirrorPod(ctx, c.Client, a.component, a.node)
		return err == nil && m == nil, nil
	}); err != nil {
		return fmt.Errorf("the mirror pod of %s on %s is still there: %w", a.component, a.node, err)
	}
	return waitAPIHealthy(ctx, c)
}
