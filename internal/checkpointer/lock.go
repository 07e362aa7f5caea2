package checkpointer

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/utils/clock"
)

// Lock is an exclusive flock on a file. The DaemonSet copy of the
// checkpointer and its static checkpoint take it before acting, so at most
// one of them changes the disk at a time.
type Lock struct {
	Path  string
	Clock clock.WithTicker // paces Acquire
	f     *os.File
}

// TryLock takes the lock if it is free and reports whether it did.
func (l *Lock) TryLock() (bool, error) {
	if l.f != nil {
		return true, nil
	}
	f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return false, fmt.Errorf("cannot open lock file %s: %w", l.Path, err)
	}
	ok, err := tryFlock(f)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return false, fmt.Errorf("cannot lock %s: %w", l.Path, err)
		}
		return false, nil
	}
	l.f = f
	return true, nil
}

// Acquire waits for the lock, checking every poll, until ctx ends.
func (l *Lock) Acquire(ctx context.Context, poll time.Duration) error {
	t := l.Clock.NewTicker(poll)
	defer t.Stop()
	for {
		ok, err := l.TryLock()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
		}
	}
}

// Unlock releases the lock. Closing the file drops the flock.
func (l *Lock) Unlock() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
