package pivot

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/record"
)

// Actions is the whole pivot, in order. Each node's static pods learn to
// share their ports in one kubelet pass, node by node. The API server goes
// one node at a time; kube-controller-manager and kube-scheduler fail over
// by leader election and serve no request, so theirs go on every node at once.
func Actions(c *Cluster, o Options) []Action {
	// A pod network first: without one the nodes are NotReady.
	actions := []Action{&installCNI{}, &installCheckpointer{}}
	const apiServer = "kube-apiserver"
	for _, n := range c.ControlPlane {
		actions = append(actions, &shareStaticPorts{node: n, components: Components})
	}
	if o.Certs == CertsSecret {
		actions = append(actions, &storeAPIServerCredentials{})
	}
	actions = append(actions, &createWorkload{component: apiServer})
	for _, n := range c.ControlPlane {
		actions = append(actions, &removeStatic{component: apiServer, node: n})
	}
	var create, remove []Action
	for _, comp := range Components[1:] {
		for _, n := range c.ControlPlane {
			remove = append(remove, &removeStatic{component: comp, node: n})
		}
		create = append(create, &createWorkload{component: comp})
	}
	others := strings.Join(Components[1:], " and ")
	return append(actions,
		&together{name: "Running " + others + " as Deployments", actions: create},
		&together{name: "Removing static " + others + " from every node", actions: remove},
		&installAddons{},
		&recordForRecovery{})
}

// recordForRecovery keeps the recovery record (package record) in step with
// the DaemonSets, for `kubectl selfhost recover`.
type recordForRecovery struct{}

func (*recordForRecovery) Name() string {
	return "Recording the API server and checkpointer DaemonSets for recover"
}

func (*recordForRecovery) Done(ctx context.Context, c *Context) (bool, error) {
	return record.Held(ctx, c.Client)
}

func (*recordForRecovery) Execute(ctx context.Context, c *Context) error {
	return record.Write(ctx, c.Client, c.Dynamic)
}

// together runs independent actions at once, as one step that is done
// when each of them is.
type together struct {
	name    string
	actions []Action
}

func (a *together) Name() string { return a.name }

func (a *together) Done(ctx context.Context, c *Context) (bool, error) {
	for _, sub := range a.actions {
		if done, err := sub.Done(ctx, c); !done || err != nil {
			return false, err
		}
	}
	return true, nil
}

func (a *together) Execute(ctx context.Context, c *Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(a.actions))
	for i, sub := range a.actions {
		done, err := sub.Done(ctx, c)
		if done || err != nil {
			errs[i] = err
			continue
		}
		wg.Go(func() {
			if err := sub.Execute(ctx, c); err != nil {
				errs[i] = errors.New(sub.Name() + ": " + err.Error())
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
