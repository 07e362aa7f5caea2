package nodecreds

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/restjson"
)

func TestSecretStoreAppliesServerSideAndQuotesNoBodyOnRefusal(t *testing.T) {
	var got *http.Request
	var body []byte
	refuse := false
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
		w.Header().Set("Content-Type", "application/json")
		if refuse {
			w.WriteHeader(http.StatusUnprocessableEntity)
			json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "code": 422, "reason": "Invalid", "message": "invalid: " + string(body)})
			return
		}
		w.Write([]byte(`{"kind":"Secret","apiVersion":"v1"}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	caFile, tokenFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	os.WriteFile(tokenFile, []byte("short-lived\n"), 0o600)
	client, err := restjson.New(srv.URL, tokenFile, caFile, Command, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	store := secretStore{client: client, path: "/api/v1/namespaces/kube-system/secrets/kube-apiserver", name: "kube-apiserver", namespace: "kube-system", fieldManager: "kubectl-selfhost"}
	data := map[string][]byte{"apiserver.key": []byte("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n")}
	if err := store.Apply(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	q := got.URL.Query()
	if got.Method != http.MethodPatch || got.Header.Get("Content-Type") != "application/apply-patch+yaml" || q.Get("fieldManager") != "kubectl-selfhost" || q.Get("force") != "true" {
		t.Fatalf("not a server-side apply: %s %s %s", got.Method, got.URL, got.Header.Get("Content-Type"))
	}
	if got.Header.Get("Authorization") != "Bearer short-lived" {
		t.Fatalf("token not sent: %q", got.Header.Get("Authorization"))
	}
	var sent corev1.Secret
	if err := json.Unmarshal(body, &sent); err != nil || string(sent.Data["apiserver.key"]) != string(data["apiserver.key"]) {
		t.Fatalf("body: %v", err)
	}
	refuse = true
	err = store.Apply(context.Background(), data)
	if err == nil || holdsKeyMaterial(err.Error()) {
		t.Fatalf("refused write: %v", err)
	}
	t.Log(err)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
