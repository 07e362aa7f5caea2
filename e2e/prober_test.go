package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// prober reads the API through kind's load balancer at a fixed rate and
// records what a client would have seen: failures and the longest gap
// between two successful answers (at least 1/probeRate when all is well).
type prober struct {
	mu        sync.Mutex
	total     int
	failed    int
	lastOK    time.Time
	longest   time.Duration
	longestAt time.Time // when the longest gap ended
	slowest   time.Duration
	slowestAt time.Time // when the slowest request started
	attempts  int       // attempts that failed or were told to retry
	firstAtts []string  // the first few of them
	firstErrs []string
	stop      context.CancelFunc
	done      chan struct{}
}

// probeRate is requests per second; the issue asks for at least 5.
const probeRate = 10

func startProber(kubeconfig string) (*prober, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 2 * time.Second
	cfg.QPS, cfg.Burst = 2*probeRate, 2*probeRate
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{stop: cancel, done: make(chan struct{}), lastOK: time.Now()}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return attemptRecorder{rt, p} }
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Second / probeRate)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			start := time.Now()
			_, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			if ctx.Err() != nil {
				return
			}
			p.record(start, err)
		}
	}()
	return p, nil
}

func (p *prober) record(start time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total++
	now := time.Now()
	if d := now.Sub(start); d > p.slowest {
		p.slowest, p.slowestAt = d, start
	}
	if err != nil {
		p.failed++
		if len(p.firstErrs) < 5 {
			p.firstErrs = append(p.firstErrs, fmt.Sprintf("%s %v", now.Format("15:04:05.000"), err))
		}
	}
	if gap := now.Sub(p.lastOK); gap > p.longest {
		p.longest, p.longestAt = gap, now
	}
	if err == nil {
		p.lastOK = now
	}
}

// result stops the prober and returns its counts.
func (p *prober) result() (total, failed int, longest time.Duration, errs []string) {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.failed, p.longest, p.firstErrs
}

// where says when the longest gap ended, which request was slowest and
// which attempts were retried, to be read against a command's timeline.
func (p *prober) where() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	const clock = "15:04:05.000"
	s := fmt.Sprintf("longest gap ended at %s; slowest request %s, sent at %s; %d attempts failed or were told to retry",
		p.longestAt.Format(clock), p.slowest.Round(time.Millisecond), p.slowestAt.Format(clock), p.attempts)
	for _, a := range p.firstAtts {
		s += "\n  " + a
	}
	return s
}

// attemptRecorder notes each attempt that failed or was answered with a
// request to retry: client-go waits the Retry-After (1 s from an API server
// that is shutting down) and the caller only sees a slow answer.
type attemptRecorder struct {
	next http.RoundTripper
	p    *prober
}

func (a attemptRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := a.next.RoundTrip(req)
	var what string
	switch {
	case err != nil && req.Context().Err() == nil:
		what = err.Error()
	case err == nil && resp.Header.Get("Retry-After") != "":
		what = fmt.Sprintf("HTTP %d, Retry-After %s", resp.StatusCode, resp.Header.Get("Retry-After"))
	default:
		return resp, err
	}
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	a.p.attempts++
	if len(a.p.firstAtts) < 5 {
		a.p.firstAtts = append(a.p.firstAtts, fmt.Sprintf("%s after %s: %s", start.Format("15:04:05.000"), time.Since(start).Round(time.Millisecond), what))
	}
	return resp, err
}
