// Package progress shows long operations: the step, its elapsed time and what
// it waits on, rewritten in place on a terminal and as plain lines elsewhere.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Status prints progress: the step, its elapsed time and what it waits on.
// On a terminal the current line is rewritten; elsewhere each event is one
// plain log line, as kind's status does.
type Status struct {
	mu    sync.Mutex
	out   io.Writer
	tty   bool
	start time.Time
	now   func() time.Time
}

// NewStatus writes progress to out; tty selects in-place updates.
func NewStatus(out io.Writer, tty bool) *Status {
	return &Status{out: out, tty: tty, start: time.Now(), now: time.Now}
}

// Step is one running action.
type Step struct {
	s     *Status
	name  string
	start time.Time
	// What Waiting last printed, and when: off a terminal a wait that has
	// not changed is repeated only every repeatEvery.
	lastWait   string
	lastWaitAt time.Time
}

const repeatEvery = 10 * time.Second

// Start announces a step.
func (s *Status) Start(name string) *Step {
	st := &Step{s: s, name: name, start: s.now()}
	s.line(" • %s ...", name)
	return st
}

// Waiting says what the step is waiting on.
func (st *Step) Waiting(format string, args ...any) {
	if st == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	st.s.mu.Lock()
	now := st.s.now()
	repeat := !st.s.tty && msg == st.lastWait && now.Sub(st.lastWaitAt) < repeatEvery
	if !repeat {
		st.lastWait, st.lastWaitAt = msg, now
	}
	st.s.mu.Unlock()
	if repeat {
		return
	}
	st.s.line(" • %s [%s] waiting for %s", st.name, st.elapsed(), msg)
}

// Note prints a line that stays, such as a failure the step answers by
// rolling back.
func (st *Step) Note(format string, args ...any) {
	if st == nil {
		return
	}
	st.s.final(" ! %s [%s] %s", st.name, st.elapsed(), fmt.Sprintf(format, args...))
}

// Skip ends a step that had nothing to do.
func (st *Step) Skip(why string) {
	st.s.final(" ✓ %s (%s)", st.name, why)
}

// End ends a step with its outcome.
func (st *Step) End(err error) {
	if err != nil {
		st.s.final(" ✗ %s [%s]", st.name, st.elapsed())
		return
	}
	st.s.final(" ✓ %s [%s]", st.name, st.elapsed())
}

// Plan prints one line of a dry run.
func (s *Status) Plan(name, state string) {
	s.final(" - %s: %s", name, state)
}

func (st *Step) elapsed() time.Duration {
	return st.s.now().Sub(st.start).Round(time.Second)
}

// line shows a passing state: on a terminal the next line overwrites it.
func (s *Status) line(format string, args ...any) { s.print(false, format, args...) }

// final shows a state that stays.
func (s *Status) final(format string, args ...any) { s.print(true, format, args...) }

func (s *Status) print(keep bool, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	switch {
	case !s.tty:
		fmt.Fprintf(s.out, "%s %s\n", s.stamp(), msg)
	case keep:
		fmt.Fprintf(s.out, "\r\033[K%s\n", msg)
	default:
		fmt.Fprintf(s.out, "\r\033[K%s", msg)
	}
}

// stamp is the time since the whole run began.
func (s *Status) stamp() string {
	return fmt.Sprintf("[%6s]", s.now().Sub(s.start).Round(time.Second))
}
