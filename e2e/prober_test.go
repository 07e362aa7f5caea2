package e2e

import (
	"context"
	"fmt"
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
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{stop: cancel, done: make(chan struct{}), lastOK: time.Now()}
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
			_, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			if ctx.Err() != nil {
				return
			}
			p.record(err)
		}
	}()
	return p, nil
}

func (p *prober) record(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total++
	now := time.Now()
	if err != nil {
		p.failed++
		if len(p.firstErrs) < 5 {
			p.firstErrs = append(p.firstErrs, fmt.Sprintf("%s %v", now.Format("15:04:05.000"), err))
		}
	}
	if gap := now.Sub(p.lastOK); gap > p.longest {
		p.longest = gap
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
