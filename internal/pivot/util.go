package pivot

import (
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func intOrPercent(i int) intstr.IntOrString { return intstr.FromInt32(int32(i)) }

func encodeYAML(obj any) (string, error) {
	b, err := yaml.Marshal(obj)
	return string(b), err
}
