package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer serves a Config. Apply swaps the config in place: proxied
// connections never see a reload, and a listener is rebound only when its
// address changes.
type Balancer struct {
	log      *slog.Logger
	mu       sync.Mutex // serialises Apply and Close
	clusters atomic.Pointer[map[string]*cluster]
	lns      map[string]*listener // by listener name
}

type cluster struct {
	name           string
	connectTimeout time.Duration
	backends       []*backend
	next           atomic.Uint64 // round-robin cursor
}

type listener struct {
	addr    string
	ln      net.Listener
	cluster atomic.Pointer[string]
}

// NewBalancer returns a Balancer with nothing to serve yet.
func NewBalancer(log *slog.Logger) *Balancer {
	b := &Balancer{log: log, lns: map[string]*listener{}}
	b.clusters.Store(&map[string]*cluster{})
	return b
}

// Apply makes cfg the served config. It returns the listeners it could not
// bind; everything else is applied even then, and a retry is safe.
func (b *Balancer) Apply(cfg *Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()

	// Clusters first, so new listeners find theirs. Endpoints that keep the
	// same health check keep their checker and health state.
	old := *b.clusters.Load()
	kept := map[*backend]bool{}
	next := map[string]*cluster{}
	for _, cc := range cfg.Clusters {
		c := &cluster{name: cc.Name, connectTimeout: cc.ConnectTimeout}
		for _, addr := range cc.Endpoints {
			be := old[cc.Name].find(addr)
			if be == nil || !be.sameCheck(cc.HealthCheck) {
				prev := be
				be = newBackend(addr, cc.HealthCheck)
				if prev != nil && cc.HealthCheck != nil {
					be.healthy.Store(prev.healthy.Load()) // only the check changed
				}
				be.startChecks(b.log)
			}
			kept[be] = true
			c.backends = append(c.backends, be)
		}
		next[cc.Name] = c
	}
	b.clusters.Store(&next)
	for _, c := range old {
		for _, be := range c.backends {
			if !kept[be] {
				be.stop()
			}
		}
	}

	want := map[string]Listener{}
	for _, l := range cfg.Listeners {
		want[l.Name] = l
	}
	for name, l := range b.lns {
		if w, ok := want[name]; !ok || w.Address != l.addr {
			b.log.Info("closing listener", "name", name, "addr", l.addr)
			l.ln.Close() // accepted connections live on
			delete(b.lns, name)
		}
	}
	var errs []error
	for _, w := range cfg.Listeners {
		if l, ok := b.lns[w.Name]; ok {
			l.cluster.Store(&w.Cluster)
			continue
		}
		ln, err := net.Listen("tcp", w.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", w.Name, err))
			continue
		}
		l := &listener{addr: w.Address, ln: ln}
		l.cluster.Store(&w.Cluster)
		b.lns[w.Name] = l
		b.log.Info("listening", "name", w.Name, "addr", ln.Addr().String(), "cluster", w.Cluster)
		go b.serve(l)
	}
	for _, name := range cfg.missingClusters() {
		b.log.Warn("listener names a cluster that is not defined; its connections will be closed", "cluster", name)
	}
	return errors.Join(errs...)
}

// Close stops listening and health checking. Proxied connections are left
// to finish; the process exit ends them.
func (b *Balancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, l := range b.lns {
		l.ln.Close()
		delete(b.lns, name)
	}
	for _, c := range *b.clusters.Load() {
		for _, be := range c.backends {
			be.stop()
		}
	}
	b.clusters.Store(&map[string]*cluster{})
}

// listenAddr returns the bound address of a listener, "" if none.
func (b *Balancer) listenAddr(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.lns[name]; ok {
		return l.ln.Addr().String()
	}
	return ""
}

func (b *Balancer) serve(l *listener) {
	for {
		conn, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			b.log.Warn("accept failed", "addr", l.addr, "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. EMFILE: don't spin
			continue
		}
		go b.proxy(conn, *l.cluster.Load())
	}
}

func (b *Balancer) proxy(down net.Conn, clusterName string) {
	c := (*b.clusters.Load())[clusterName]
	if c == nil {
		b.log.Warn("no such cluster; closing connection", "cluster", clusterName, "client", down.RemoteAddr().String())
		down.Close()
		return
	}
	up, err := c.dial()
	if err != nil {
		b.log.Warn("no endpoint reachable; closing connection", "cluster", clusterName, "client", down.RemoteAddr().String(), "err", err)
		down.Close()
		return
	}
	pipe(down, up)
}

func (c *cluster) find(addr string) *backend {
	if c == nil {
		return nil
	}
	for _, be := range c.backends {
		if be.addr == addr {
			return be
		}
	}
	return nil
}

// dial connects to the next healthy endpoint, round robin, trying the others
// if it refuses. With no healthy endpoint it tries all of them, like envoy's
// panic mode: during kubeadm init the first API server serves before its
// first passing check.
func (c *cluster) dial() (net.Conn, error) {
	var cands []*backend
	for _, be := range c.backends {
		if be.healthy.Load() {
			cands = append(cands, be)
		}
	}
	if len(cands) == 0 {
		cands = c.backends
	}
	if len(cands) == 0 {
		return nil, errors.New("cluster has no endpoints")
	}
	// Envoy resolves STRICT_DNS names off the connect path; we resolve on
	// it, so give DNS a second on top of connect_timeout.
	d := net.Dialer{Timeout: c.connectTimeout + time.Second}
	start := c.next.Add(1) - 1
	var errs []string
	for i := range cands {
		be := cands[(start+uint64(i))%uint64(len(cands))]
		conn, err := d.Dial("tcp", be.addr)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

// pipe copies both ways, passing half-closes on, until both sides are done.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
