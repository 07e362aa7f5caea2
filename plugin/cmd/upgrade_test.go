package cmd

import (
	"strings"
	"testing"
)

// Bad flags are refused in one sentence before any cluster is contacted:
// the kubeconfig points nowhere.
func TestUpgradeRefusesBadFlagsBeforeTheCluster(t *testing.T) {
	for args, want := range map[string]string{
		"":                                      "nothing to upgrade: pass --kubernetes-version, --set, or both",
		"--kubernetes-version 1.37":             `--kubernetes-version "1.37" is not a release such as`,
		"--kubernetes-version v1.38.0-rc.1":     "is not a release",
		"--set kube-apiserver.v":                "is not <component>.<flag>=<value>",
		"--set kube-proxy.v=2":                  "the component must be kube-apiserver, kube-controller-manager or kube-scheduler",
		"--set kube-apiserver.secure-port=1":    "upgrade keeps --secure-port as it is",
		"--set kube-apiserver.v=2 --timeout 0s": "--timeout and --step-timeout must be positive",
	} {
		_, err := run(t, append([]string{"upgrade", "--kubeconfig", "/nonexistent"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("upgrade %s: got %v, want %q", args, err, want)
		}
	}
}
