// Command kubectl is a plain kubectl (k8s.io/kubectl, pinned in go.mod) used only
// by krew/install-test.sh: it gives the test the real kubectl plugin discovery
// (kubectl-<name> on $PATH) and plugin completion (kubectl_complete-<name>).
// It is the same main as k8s.io/kubernetes/cmd/kubectl, without that module's weight.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
