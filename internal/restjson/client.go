// Package restjson is a small JSON client of the Kubernetes API for our
// node-side binaries. client-go's REST stack would work too, but it adds
// serializers and transports they never use, and every megabyte of binary
// shows up in a daemon's resident memory.
package restjson

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Client sends requests with a bearer token read from a file on every
// request, so a rotated token is picked up.
type Client struct {
	server    string
	tokenFile string
	userAgent string
	http      *http.Client
}

// New builds a client of server that trusts the CA bundle in caFile. timeout
// bounds every request.
func New(server, tokenFile, caFile, userAgent string, timeout time.Duration) (*Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the API server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return &Client{
		server:    strings.TrimSuffix(server, "/"),
		tokenFile: tokenFile,
		userAgent: userAgent,
		http: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     time.Minute,
			},
		},
	}, nil
}

// Do sends one request and decodes the JSON answer into out. An error answer
// becomes an apierrors.StatusError, so apierrors.IsNotFound and
// apierrors.IsForbidden work on it.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) error {
	u := c.server + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	token, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return fmt.Errorf("cannot read the service account token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var st metav1.Status
		if json.Unmarshal(b, &st) != nil || st.Kind != "Status" {
			st = metav1.Status{Status: metav1.StatusFailure, Code: int32(resp.StatusCode), Message: strings.TrimSpace(string(b))}
			switch resp.StatusCode {
			case http.StatusNotFound:
				st.Reason = metav1.StatusReasonNotFound
			case http.StatusUnauthorized:
				st.Reason = metav1.StatusReasonUnauthorized
			case http.StatusForbidden:
				st.Reason = metav1.StatusReasonForbidden
			}
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s answered with something other than JSON: %w", method, path, err)
	}
	return nil
}
