package pivot

// Actions is the whole pivot, in order.
func Actions(c *Cluster, o Options) []Action {
	// A pod network first: without one the nodes are NotReady.
	actions := []Action{&installCNI{}, &installCheckpointer{}}
	for _, comp := range Components {
		for _, n := range c.ControlPlane {
			actions = append(actions, &shareStaticPort{component: comp, node: n})
		}
		if comp == "kube-apiserver" && o.Certs == CertsSecret {
			actions = append(actions, &storeAPIServerCredentials{})
		}
		actions = append(actions, &createWorkload{component: comp})
		for _, n := range c.ControlPlane {
			actions = append(actions, &removeStatic{component: comp, node: n})
		}
	}
	return append(actions, &installAddons{})
}
