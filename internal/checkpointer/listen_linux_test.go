package checkpointer

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
	"testing"
	"time"
)

// listenShared listens as kube-apiserver --permit-port-sharing does.
func listenShared(t *testing.T, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	return l
}

// serve answers every connection with the listener's name.
func serve(l net.Listener, name string) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(name))
			_ = c.Close()
		}
	}()
}

func answeredBy(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "refused"
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 16)
	n, _ := c.Read(b)
	return string(b[:n])
}

// The premise of checkpoint.ArgsAnnotation, on this kernel: a checkpoint bound to the
// node's address (127.0.0.1 here) gets every connection to that address,
// even beside a parent bound to all addresses on the same port; any other
// address (127.0.0.2 here, 127.0.0.1 on a node) reaches only the parent; and
// once the checkpoint stops, the parent takes the node's address too.
func TestCheckpointOwnsTheNodeAddressBesideItsParent(t *testing.T) {
	checkpoint := listenShared(t, "127.0.0.1:0")
	port := checkpoint.Addr().(*net.TCPAddr).Port
	parent := listenShared(t, fmt.Sprintf("0.0.0.0:%d", port)) // the parent returns while the checkpoint serves
	defer parent.Close()
	serve(checkpoint, "checkpoint")
	serve(parent, "parent")
	node, other := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.2:%d", port)

	for i := range 20 {
		if got := answeredBy(t, node); got != "checkpoint" {
			t.Fatalf("connection %d to the node's address answered by %s, want the checkpoint", i, got)
		}
		if got := answeredBy(t, other); got != "parent" {
			t.Fatalf("connection %d to another address answered by %s, want the parent", i, got)
		}
	}
	checkpoint.Close()
	if got := answeredBy(t, node); got != "parent" {
		t.Fatalf("after the checkpoint stopped, the node's address was answered by %s, want the parent", got)
	}
}
