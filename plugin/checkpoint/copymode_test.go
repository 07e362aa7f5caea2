package checkpoint

import (
	"io/fs"
	"testing"
)

func TestCopyMode(t *testing.T) {
	for in, want := range map[int32]fs.FileMode{0o644: 0o600, 0o400: 0o400, 0o755: 0o700, 0o440: 0o400, 0o777: 0o700} {
		if got := copyMode(in); got != want {
			t.Errorf("copyMode(%o) = %o, want %o", in, got, want)
		}
	}
}
