package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// backend is one endpoint of a cluster and its health as last checked.
type backend struct {
	addr    string
	hc      *HealthCheck // nil: never checked, always healthy
	healthy atomic.Bool
	stop    context.CancelFunc
}

func newBackend(addr string, hc *HealthCheck) *backend {
	b := &backend{addr: addr, hc: hc, stop: func() {}}
	// Unchecked endpoints count as healthy, as in envoy. Checked ones start
	// unhealthy until their first check passes.
	b.healthy.Store(hc == nil)
	return b
}

// sameCheck reports whether b already runs the health check hc would.
func (b *backend) sameCheck(hc *HealthCheck) bool {
	if b.hc == nil || hc == nil {
		return b.hc == hc
	}
	return *b.hc == *hc
}

// startChecks runs b's health check until stop is called.
func (b *backend) startChecks(log *slog.Logger) {
	if b.hc == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go b.checkLoop(ctx, log.With("endpoint", b.addr))
}

func (b *backend) checkLoop(ctx context.Context, log *slog.Logger) {
	hc := b.hc
	client := &http.Client{
		Timeout: hc.Timeout,
		Transport: &http.Transport{
			// The API server's serving cert is self-signed; kind says
			// trust_chain_verification: ACCEPT_UNTRUSTED.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true, // each check is a fresh connect, like a new client
			Proxy:             nil,  // kind may pass HTTP_PROXY; never route checks through it
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	url := hc.url(b.addr)
	var ok, fail int
	first := true
	timer := time.NewTimer(0) // kind sets initial_jitter: 0s
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := probe(ctx, client, url)
		if ctx.Err() != nil {
			return
		}
		healthy := b.healthy.Load()
		switch {
		case err == nil:
			ok, fail = ok+1, 0
			// A fresh endpoint is healthy on its first pass, as in envoy.
			if !healthy && (first || ok >= hc.HealthyThreshold) {
				b.healthy.Store(true)
				log.Info("endpoint healthy", "url", url)
			}
		default:
			ok, fail = 0, fail+1
			if first || (healthy && fail >= hc.UnhealthyThreshold) {
				b.healthy.Store(false)
				log.Warn("endpoint unhealthy", "url", url, "err", err)
			}
		}
		first = false
		timer.Reset(hc.Interval)
	}
}

// probe passes on HTTP 200, envoy's default expected status.
func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "Envoy/HC")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
