// Command names prints the upstream image names of internal/images as shell
// assignments (IMG_APISERVER=...), so the image factory and the rendered
// manifests share one list of names.
package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
)

func main() {
	set := reflect.ValueOf(images.Upstream(images.KubernetesVersion, ""))
	for i := range set.NumField() {
		fmt.Printf("IMG_%s=%s\n", strings.ToUpper(set.Type().Field(i).Name), set.Field(i).String())
	}
	fmt.Printf("KUBERNETES_VERSION=%s\n", images.KubernetesVersion)
}
