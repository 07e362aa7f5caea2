package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// apiServer imitates a kube-apiserver on 127.0.0.1: TLS with a self-signed
// cert, GET /healthz answers 200 while healthy and hangs (never answers)
// otherwise, and any other line is echoed back prefixed with its name, so a
// client can tell which backend its proxied connection reached.
type apiServer struct {
	name    string
	ln      net.Listener
	healthy atomic.Bool
	checks  atomic.Int64 // /healthz requests seen
}

func newAPIServer(t *testing.T, name string) *apiServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	s := &apiServer{name: name, ln: ln}
	s.healthy.Store(true)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.handle(c)
		}
	}()
	return s
}

func (s *apiServer) addr() string { return s.ln.Addr().String() }

func (s *apiServer) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	if strings.HasPrefix(line, "GET /healthz ") {
		s.checks.Add(1)
		if !s.healthy.Load() {
			_, _ = io.Copy(io.Discard, r) // stop answering; the checker times out
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		return
	}
	for ; err == nil; line, err = r.ReadString('\n') {
		fmt.Fprintf(c, "%s: %s", s.name, line)
	}
}

var (
	certOnce sync.Once
	cert     tls.Certificate
)

func selfSigned(t *testing.T) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "kube-apiserver"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return cert
}

// client is a TLS connection through the balancer, as kubectl would open.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialLB(t *testing.T, addr string) (*client, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}, nil
}

// echo sends msg and returns the name of the backend that echoed it.
func (c *client) echo(msg string) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	name, got, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
	if !ok || got != msg {
		return "", fmt.Errorf("echo of %q came back as %q", msg, line)
	}
	return name, nil
}

// via opens a new connection and reports which backend served it.
func via(t *testing.T, addr string) string {
	t.Helper()
	c, err := dialLB(t, addr)
	if err != nil {
		t.Fatalf("dial balancer: %v", err)
	}
	defer c.conn.Close()
	name, err := c.echo("ping")
	if err != nil {
		t.Fatalf("echo through balancer: %v", err)
	}
	return name
}

// eventually retries cond every 50ms for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}

// lbDir holds an envoy.yaml that points at lds.yaml and cds.yaml beside it,
// as kind's does in /home/envoy.
type lbDir struct {
	t   *testing.T
	dir string
}

func newLBDir(t *testing.T, lds, cds string) *lbDir {
	d := &lbDir{t: t, dir: t.TempDir()}
	boot, err := os.ReadFile("testdata/kind-ha/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d.write("envoy.yaml", strings.ReplaceAll(string(boot), "/home/envoy", d.dir))
	d.replace("lds.yaml", lds)
	d.replace("cds.yaml", cds)
	return d
}

func (d *lbDir) write(name, content string) {
	if err := os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// replace swaps a file in by rename, as kind's `mv cds.yaml.tmp cds.yaml`.
func (d *lbDir) replace(name, content string) {
	d.write(name+".tmp", content)
	if err := os.Rename(filepath.Join(d.dir, name+".tmp"), filepath.Join(d.dir, name)); err != nil {
		d.t.Fatal(err)
	}
}

// startLB runs the program as main does, polling every 50ms, until the test
// ends.
func startLB(t *testing.T, d *lbDir) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	go func() {
		done <- run(ctx, []string{"--log-level", "info", "-c", filepath.Join(d.dir, "envoy.yaml")}, 50*time.Millisecond, log)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// servedBy opens n connections and returns which backend served each.
func servedBy(t *testing.T, addr string, n int) []string {
	t.Helper()
	var names []string
	for range n {
		names = append(names, via(t, addr))
	}
	return names
}

func all(names []string, want string) bool {
	for _, n := range names {
		if n != want {
			return false
		}
	}
	return true
}

func TestFailoverOnHealthz(t *testing.T) {
	a, b := newAPIServer(t, "a"), newAPIServer(t, "b")
	port := freePort(t)
	lb := "127.0.0.1:" + port
	d := newLBDir(t, kindLDS(t, port), kindCDS(t, []string{a.addr(), b.addr()}, "0.05s", "0.2s"))
	startLB(t, d)

	// Both healthy: new connections alternate.
	eventually(t, "both backends pass /healthz", func() bool { return a.checks.Load() > 0 && b.checks.Load() > 0 })
	eventually(t, "connections alternate over a and b", func() bool {
		got := servedBy(t, lb, 4)
		return got[0] != got[1] && got[0] == got[2] && got[1] == got[3]
	})

	// a stops answering /healthz but still accepts connections: only its
	// health check can tell the balancer to skip it.
	a.healthy.Store(false)
	eventually(t, "every new connection goes to b", func() bool { return all(servedBy(t, lb, 6), "b") })
	for range 3 {
		if got := servedBy(t, lb, 6); !all(got, "b") {
			t.Fatalf("unhealthy a still gets connections: %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// a recovers and gets its share again.
	a.healthy.Store(true)
	eventually(t, "a serves again", func() bool { return strings.Contains(strings.Join(servedBy(t, lb, 4), ""), "a") })

	// b vanishes before any check notices: connections that pick b fail
	// over to a at connect time, so none is lost.
	b.ln.Close()
	for i, name := range servedBy(t, lb, 6) {
		if name != "a" {
			t.Fatalf("connection %d after b closed was served by %q", i, name)
		}
	}
}

func TestReloadKeepsEstablishedConnections(t *testing.T) {
	a, b, c := newAPIServer(t, "a"), newAPIServer(t, "b"), newAPIServer(t, "c")
	port := freePort(t)
	lb := "127.0.0.1:" + port
	d := newLBDir(t, kindLDS(t, port), kindCDS(t, []string{a.addr(), b.addr()}, "0.05s", "0.2s"))
	startLB(t, d)
	eventually(t, "a and b pass /healthz", func() bool { return a.checks.Load() > 0 && b.checks.Load() > 0 })

	old, err := dialLB(t, lb)
	if err != nil {
		t.Fatal(err)
	}
	first, err := old.echo("before")
	if err != nil {
		t.Fatal(err)
	}

	// Swap the backend set for c alone, by rename as kind does.
	d.replace("cds.yaml", kindCDS(t, []string{c.addr()}, "0.05s", "0.2s"))
	eventually(t, "new connections go to c", func() bool { return all(servedBy(t, lb, 3), "c") })
	if got, err := old.echo("after cds"); err != nil || got != first {
		t.Fatalf("established connection after cds reload: backend %q, err %v; want %q", got, err, first)
	}

	// A file that does not parse is rejected and the running config kept.
	d.replace("cds.yaml", "resources: [")
	time.Sleep(300 * time.Millisecond)
	if got := servedBy(t, lb, 3); !all(got, "c") {
		t.Fatalf("after a bad cds.yaml: %v", got)
	}

	// Changing the port rebinds the listener; the old connection, accepted
	// on the closed listener, still echoes.
	d.replace("cds.yaml", kindCDS(t, []string{c.addr()}, "0.05s", "0.2s"))
	port2 := freePort(t)
	d.replace("lds.yaml", kindLDS(t, port2))
	eventually(t, "the new port serves", func() bool {
		cl, err := dialLB(t, "127.0.0.1:"+port2)
		if err != nil {
			return false
		}
		defer cl.conn.Close()
		name, err := cl.echo("new port")
		return err == nil && name == "c"
	})
	eventually(t, "the old port is closed", func() bool {
		conn, err := net.DialTimeout("tcp", lb, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	for i := range 3 {
		if got, err := old.echo(fmt.Sprintf("still here %d", i)); err != nil || got != first {
			t.Fatalf("established connection after lds reload: backend %q, err %v; want %q", got, err, first)
		}
	}
}

func TestSameListenerIsNotRebound(t *testing.T) {
	a := newAPIServer(t, "a")
	lb := NewBalancer(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	defer lb.Close()
	cfg := &Config{
		Listeners: []Listener{{Name: "l", Address: "127.0.0.1:0", Cluster: "x"}},
		Clusters:  []Cluster{{Name: "x", ConnectTimeout: time.Second, Endpoints: []string{a.addr()}}},
	}
	if err := lb.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	before := lb.listenAddr("l")
	// Port 0 asks for a fresh port on every bind, so an unchanged address
	// after Apply proves the listener was kept, not rebound.
	cfg.Clusters[0].Endpoints = []string{a.addr(), a.addr()}
	if err := lb.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if after := lb.listenAddr("l"); after != before {
		t.Fatalf("listener rebound from %s to %s on a cluster-only change", before, after)
	}
	if got := via(t, before); got != "a" {
		t.Fatalf("served by %q", got)
	}
}
