package check

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// checks are three checks, the second failing, that record which ran.
func checks(ran *[]string) []Checker {
	named := func(name string, err error) Checker {
		return Named(name, func(context.Context) (string, error) {
			*ran = append(*ran, name)
			if err != nil {
				return "", err
			}
			return name + " is fine", nil
		})
	}
	return []Checker{named("first", nil), named("second", errors.New("second is broken")), named("third", nil)}
}

func TestAllRunsEveryCheckAndReportsEach(t *testing.T) {
	var ran []string
	rs := All(context.Background(), checks(&ran)...)
	if !slices.Equal(ran, []string{"first", "second", "third"}) {
		t.Errorf("ran %v, want every check in order", ran)
	}
	if rs.Passed() || rs.Failed() != 1 {
		t.Errorf("passed=%v failed=%d, want one failure", rs.Passed(), rs.Failed())
	}
	if got := rs.Failing(); got != "second: second is broken" {
		t.Errorf("failing %q", got)
	}
	third, ok := rs.Find("third")
	if !ok || !third.Passed || third.Detail != "third is fine" || third.Err != nil {
		t.Errorf("third: %+v, %v; want its passing detail", third, ok)
	}
	if _, ok := rs.Find("fourth"); ok {
		t.Error("found a check that never ran")
	}
}

func TestUntilFailureStopsAtTheFirstFailure(t *testing.T) {
	var ran []string
	rs, err := UntilFailure(context.Background(), checks(&ran)...)
	if err == nil || err.Error() != "second is broken" {
		t.Fatalf("err = %v, want the second check's error as it is", err)
	}
	if !slices.Equal(ran, []string{"first", "second"}) || len(rs) != 2 {
		t.Errorf("ran %v with %d results; want it to stop after the second", ran, len(rs))
	}
	if second, _ := rs.Find("second"); second.Passed || second.Detail != "second is broken" {
		t.Errorf("second: %+v", second)
	}
}

func TestEveryCheckPassing(t *testing.T) {
	ok := Named("ok", func(context.Context) (string, error) { return "fine", nil })
	if _, err := UntilFailure(context.Background(), ok, ok); err != nil {
		t.Errorf("err = %v", err)
	}
	if rs := All(context.Background(), ok); !rs.Passed() || rs.Failing() != "" {
		t.Errorf("results %+v", rs)
	}
}
