package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/kube"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/pki"
)

// ExpiryWarning is how close to expiry a control-plane certificate may be
// before verify fails; bootstrap reissues leaf certificates inside it.
const ExpiryWarning = 30 * 24 * time.Hour

// credentialSecrets hold the certificates the self-hosted control plane
// serves and uses: the pivot's API server Secret, and render's two.
var credentialSecrets = []string{"kube-apiserver", "kube-controller-manager"}

// checkCertificates fails when any certificate in the control plane's
// Secrets expires within ExpiryWarning, naming each with its date.
func (c *cluster) checkCertificates(ctx context.Context) (string, error) {
	var problems, read []string
	var soonest *pki.Expiry
	for _, name := range credentialSecrets {
		s, err := c.client.CoreV1().Secrets(kube.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", readError("Secret", kube.Namespace, name, err)
		}
		expiries, err := pki.Expiries(s.Data)
		if err != nil {
			problems = append(problems, fmt.Sprintf("Secret %s/%s: %v", kube.Namespace, name, err))
			continue
		}
		read = append(read, name)
		for i, e := range expiries {
			where := fmt.Sprintf("%s in Secret %s/%s", e, kube.Namespace, name)
			switch {
			case c.now.Add(ExpiryWarning).After(e.NotAfter) && e.CA:
				problems = append(problems, where+" (a CA: renew it by hand)")
			case c.now.Add(ExpiryWarning).After(e.NotAfter):
				problems = append(problems, where+" (kubectl selfhost bootstrap reissues it)")
			}
			if soonest == nil || e.NotAfter.Before(soonest.NotAfter) {
				soonest = &expiries[i]
			}
		}
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	if soonest == nil {
		return "no certificate Secret: the control plane reads kubeadm's files on each node (kubeadm certs check-expiration)", nil
	}
	return fmt.Sprintf("none expires within %d days (Secrets %s; first: %s)", int(ExpiryWarning.Hours()/24), strings.Join(read, ", "), soonest), nil
}
