package e2e

import (
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/features"
	"sigs.k8s.io/e2e-framework/pkg/types"

	"github.com/kubectl-selfhost/kubectl-selfhost/e2e/barenode"
)

// The suite, in the order it runs. Go runs a package's tests in the order
// they are written, and these are its only tests. Each also runs alone with
// -run: on a cluster an earlier run pivoted and kept (E2E_KEEP=1),
// TestRecovery drills it and TestSmoke proves workloads on it. What one test
// leaves for the next travels in the context (stateOf).

// TestPivot pivots the kind cluster, proves it, and loses a control-plane node.
func TestPivot(t *testing.T) {
	testenv.Test(t,
		features.New("bootstrap pivots the control plane with no API gap").
			Setup(writeCanaries).
			Assess("a pivot killed after the API server step resumes to completion", resumeKilledBootstrap).
			Assess("verify passes", verifyPasses).
			Assess("only etcd is left static", onlyEtcdLeftStatic).
			Assess("every API server serves the one certificate in its Secret", servesSecretCert).
			Assess("the node agents leave nothing behind, no CA key leaves its node, the checkpointers listen on loopback", agentsLeaveNothing).
			Assess("a rerun is a no-op", rerunIsNoOp).
			Assess("the canaries are byte-identical", checkCanaries).
			Feature(),
		features.New("losing a control-plane node").
			Assess("the API answers and the leases move; the node rejoins", stopLeaseHolder).
			Assess("the canaries are byte-identical", checkCanaries).
			Feature(),
	)
}

// TestRecovery breaks the self-hosted control plane that TestPivot leaves, in
// every way the checkpointer is meant to survive, and proves it comes back
// with no help. Every scenario ends with verify passing and the canaries
// byte-identical.
func TestRecovery(t *testing.T) {
	testenv.Test(t,
		features.New("the self-hosted control plane brings itself back").
			Setup(requirePivotedCluster).
			Assess("every API server pod deleted by verify --drill apiserver", deleteEveryAPIServerPod).
			Assess("every API server pod deleted while nothing schedules the replacements; the checkpoints serve until they run", deleteAPIServersWhileNothingSchedules).
			Assess("a bad API server rollout survived and rolled back; it is never checkpointed", rollOutBadAPIServer).
			Assess("a parent moved off a node; its checkpoint there is removed", moveParentOffNode).
			Assess("a node restarted while every API server is down; it starts its checkpoints from disk", restartNodeWhileAPIDown).
			Assess("every control-plane node restarted at once", restartEveryControlPlaneNode).
			Assess("the checkpointer removed and reinstalled; no checkpoint outlives it", removeAndReinstallCheckpointer).
			Feature(),
	)
}

// TestSmoke proves workloads run on what the earlier tests leave.
func TestSmoke(t *testing.T) {
	testenv.Test(t,
		features.New("pod network, DNS and services").
			Setup(applyFlannel).
			Setup(createSmokeNamespace).
			Assess("all nodes are Ready", allNodesReady).
			Assess("a pod reaches a pod on another node", podReachesPodOnAnotherNode).
			Assess("CoreDNS resolves kubernetes.default.svc.cluster.local", coreDNSResolves).
			Assess("a ClusterIP Service routes to a pod on another node", serviceRoutesAcrossNodes).
			Teardown(deleteSmokeNamespace).
			Feature(),
	)
}

// TestRevertAndRecover takes the ways out: revert to static pods and pivot
// again, then lose every API server and bring them back from etcd.
func TestRevertAndRecover(t *testing.T) {
	testenv.Test(t,
		features.New("revert returns the control plane to static pods; bootstrap pivots it again").
			Setup(requirePivotedCluster).
			Assess("revert with no failed request", revertToStatic).
			Assess("verify --expect static passes", verifyStaticPasses).
			Assess("no checkpoint, checkpointer file or extra manifest left on any node", noCheckpointLeft).
			Assess("kubeadm upgrade plan runs on the first node", kubeadmUpgradePlanRuns).
			Assess("a rerun of revert changes nothing", revertRerunIsNoOp).
			Assess("the canaries are byte-identical", checkCanaries).
			Assess("bootstrap pivots the reverted cluster; verify passes", pivotAgain).
			Feature(),
		features.New("recover brings the control plane back from etcd").
			Setup(requirePivotedCluster).
			Assess("both DaemonSets deleted; no API server answers for 60 s", loseEveryAPIServer).
			Assess("recover on a master brings the API back; verify passes", recoverFromEtcd).
			Assess("the canaries are byte-identical", checkCanaries).
			Feature(),
	)
}

// TestStart boots a second cluster with no kubeadm, from render's assets on
// bare kubelet nodes, as bootkube did, at upgradeFrom(); upgrades it to the
// default version, killed and resumed, then with a day-2 flag and a bad
// one; and proves it as the kind one is proven. It runs last: it deletes
// the kind cluster to make room.
func TestStart(t *testing.T) {
	testenv.Test(t,
		features.New("start boots a self-hosted cluster from render's assets on bare kubelet nodes").
			Setup(makeRoomForStart).
			Setup(onBare(func(c *barenode.Cluster) types.EnvFunc { return c.Create() })).
			Setup(onBare(func(c *barenode.Cluster) types.EnvFunc {
				return c.Render(pluginPath(), "--metrics-kubelet-insecure-tls", "--dns-off-control-plane", "--kubernetes-version", upgradeFrom())
			})).
			Setup(onBare(func(c *barenode.Cluster) types.EnvFunc { return c.LoadImages(kindPath(), extraImages()...) })).
			Setup(onBare(func(c *barenode.Cluster) types.EnvFunc { return c.InstallAssets() })).
			Setup(startTheCluster).
			Setup(writeCanaries).
			Assess("verify passes", verifyPasses).
			Assess("a rerun of start changes nothing", startRerunIsNoOp).
			Assess("no kubeadm anywhere, no bootstrap pod or credential left, every node Ready", noKubeadmAnywhere).
			Assess("pod network, DNS and services", smokeOnBare).
			Assess("upgrade to the default version, killed and resumed, with no failed request", upgradeControlPlane).
			Assess("a rerun of upgrade changes nothing", upgradeRerunIsNoOp).
			Assess("a day-2 flag lands on every API server and in every checkpoint", setFlagEverywhere).
			Assess("a flag the API server refuses is rolled back; no checkpoint holds it", rollBackBadFlag).
			Assess("every API server pod deleted by verify --drill apiserver", deleteEveryAPIServerPod).
			Assess("every control-plane node restarted at once", restartEveryControlPlaneNode).
			Assess("the canaries are byte-identical", checkCanaries).
			Teardown(tearDownStart).
			Feature(),
	)
}
