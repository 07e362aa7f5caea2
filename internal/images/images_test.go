package images

import "testing"

func TestCheckReference(t *testing.T) {
	for _, ref := range []string{
		DefaultCheckpointer, Upstream(KubernetesVersion, "").APIServer, "busybox", "docker.io/library/busybox:1.36",
		"localhost:5000/a/b_c.d-e:v1", "registry.k8s.io/pause@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	} {
		if err := CheckReference("--image", ref); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	for _, ref := range []string{"", "Upper/case", "busybox:", "a b", "busybox:1.36 --privileged", "-x", "a//b", "busybox@sha256:short"} {
		if err := CheckReference("--image", ref); err == nil {
			t.Errorf("%q passed", ref)
		}
	}
}
