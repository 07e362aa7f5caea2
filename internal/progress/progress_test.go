package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainOutputRepeatsAnUnchangedWaitOnlyEveryTenSeconds(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewStatus(&out, false)
	s.start, s.now = now, func() time.Time { return now }

	st := s.Start("Deleting pods")
	for range 5 { // one second apart: printed once
		st.Waiting("the API (%s)", "down")
		now = now.Add(time.Second)
	}
	st.Waiting("the API (%s)", "answering") // changed: printed at once
	now = now.Add(11 * time.Second)
	st.Waiting("the API (%s)", "answering") // unchanged but 11 s later: printed
	st.End(nil)

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"[    0s]  • Deleting pods ...",
		"[    0s]  • Deleting pods [0s] waiting for the API (down)",
		"[    5s]  • Deleting pods [5s] waiting for the API (answering)",
		"[   16s]  • Deleting pods [16s] waiting for the API (answering)",
		"[   16s]  ✓ Deleting pods [16s]",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

func TestTerminalOutputRewritesTheWaitingLine(t *testing.T) {
	var out bytes.Buffer
	s := NewStatus(&out, true)
	st := s.Start("Step")
	st.Waiting("a")
	st.Waiting("a")
	st.End(nil)
	if got := strings.Count(out.String(), "waiting for a"); got != 2 {
		t.Errorf("a terminal shows every wait in place; got %d in %q", got, out.String())
	}
	if !strings.HasSuffix(out.String(), "\r\033[K ✓ Step [0s]\n") {
		t.Errorf("the final line does not overwrite the waiting one: %q", out.String())
	}
}
