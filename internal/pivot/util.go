package pivot

import (
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/images"
)

// imagesFor names the add-on images for the cluster's own version.
func imagesFor(c *Context) images.Set {
	return images.Upstream(c.Cluster.KubernetesVersion, c.Options.CheckpointerImage)
}

func intOrPercent(i int) intstr.IntOrString { return intstr.FromInt32(int32(i)) }

func encodeYAML(obj any) (string, error) {
	b, err := yaml.Marshal(obj)
	return string(b), err
}
