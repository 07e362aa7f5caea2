package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/kubectl-selfhost/kubectl-selfhost/e2e/barenode"
)

// The kind nodes are Docker containers. These helpers stop, start, inspect
// and run commands in them, and fail the test when Docker does.

// docker runs a docker command, such as stopping or starting a node.
func docker(ctx context.Context, t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
}

// controlPlaneContainers lists the control-plane node containers in address order.
func controlPlaneContainers(ctx context.Context, t *testing.T) []string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+stateOf(ctx).nodes,
		"--filter", "label=io.x-k8s.kind.role=control-plane", "--format", "{{.Names}}").Output()
	if err != nil {
		t.Fatalf("listing the control-plane nodes: %v", err)
	}
	nodes := strings.Fields(string(out))
	addrs := map[string]string{}
	for i, a := range nodeAddresses(ctx, t, nodes) {
		addrs[nodes[i]] = a
	}
	sort.Slice(nodes, func(i, j int) bool { return ipLess(addrs[nodes[i]], addrs[nodes[j]]) })
	return nodes
}

// nodeAddresses gives each node's IP address, in the order of nodes.
func nodeAddresses(ctx context.Context, t *testing.T, nodes []string) []string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		a, err := barenode.Address(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// ipLess orders IPv4 addresses by number, not as text.
func ipLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	if len(pa) != 4 || len(pb) != 4 {
		return a < b
	}
	for i := range pa {
		var x, y int
		fmt.Sscan(pa[i], &x)
		fmt.Sscan(pb[i], &y)
		if x != y {
			return x < y
		}
	}
	return false
}

// nodeShell runs a shell script on a node and returns what it printed.
func nodeShell(ctx context.Context, t *testing.T, node, script string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "exec", node, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", node, script, err, out)
	}
	return string(out)
}
