//go:build !unix

package checkpointer

import (
	"errors"
	"os"
)

// tryFlock: the daemon runs only on Linux nodes; this lets the plugin, which
// reads checkpoint status, build for every platform.
func tryFlock(*os.File) (bool, error) {
	return false, errors.New("file locks are not supported on this platform")
}
