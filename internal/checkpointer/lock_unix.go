//go:build unix

package checkpointer

import (
	"errors"
	"os"
	"syscall"
)

// tryFlock takes an exclusive flock without waiting; false means it is held.
func tryFlock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
