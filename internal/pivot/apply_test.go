package pivot

import "testing"

// kubeadm's ServiceAccounts carry only a name: applying them leaves no
// managed-fields entry, so they count as done once they exist.
func TestSetsFields(t *testing.T) {
	objs, err := decodeManifest([]byte(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-proxy
  namespace: kube-system
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: metrics-server
  namespace: kube-system
  labels:
    k8s-app: metrics-server
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: x
data:
  a: b
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, true} {
		if got := setsFields(objs[i]); got != want {
			t.Errorf("%s: setsFields=%v, want %v", objs[i].GetName(), got, want)
		}
	}
}
