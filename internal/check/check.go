// Package check gives every check of a cluster one shape, after kubeadm's
// preflight Checker: a name, and a Check that reads and changes nothing. A
// gate runs checks until one fails (bootstrap's preflight refuses before it
// changes anything); a report runs them all (verify).
package check

import (
	"context"
	"strings"
)

// Checker is one check.
type Checker interface {
	// Name is the check's name in reports and lookups.
	Name() string
	// Check says what it found: a detail when the check passes, or an
	// error, one sentence with the reason, when it fails.
	Check(ctx context.Context) (detail string, err error)
}

// Named makes a Checker of a function.
func Named(name string, check func(ctx context.Context) (string, error)) Checker {
	return namedFunc{name: name, check: check}
}

type namedFunc struct {
	name  string
	check func(context.Context) (string, error)
}

func (f namedFunc) Name() string                              { return f.name }
func (f namedFunc) Check(ctx context.Context) (string, error) { return f.check(ctx) }

// Result is what one check found.
type Result struct {
	Check  string `json:"check"`
	Passed bool   `json:"passed"`
	// Detail is what the check found, or why it failed.
	Detail string `json:"detail"`
	// Err is why the check failed, for errors.Is and errors.As.
	Err error `json:"-"`
}

// Results are the results of a list of checks, in its order.
type Results []Result

// All runs every check, in order, and returns every result.
func All(ctx context.Context, checks ...Checker) Results {
	results, _ := run(ctx, checks, false)
	return results
}

// UntilFailure runs the checks in order and stops at the first that fails.
// It returns the results so far and that check's error.
func UntilFailure(ctx context.Context, checks ...Checker) (Results, error) {
	return run(ctx, checks, true)
}

func run(ctx context.Context, checks []Checker, stopAtFailure bool) (Results, error) {
	results := make(Results, 0, len(checks))
	for _, c := range checks {
		detail, err := c.Check(ctx)
		res := Result{Check: c.Name(), Passed: err == nil, Detail: detail, Err: err}
		if err != nil {
			res.Detail = err.Error()
		}
		results = append(results, res)
		if err != nil && stopAtFailure {
			return results, err
		}
	}
	return results, nil
}

// Find returns the result of the check with that name.
func (rs Results) Find(name string) (Result, bool) {
	for _, res := range rs {
		if res.Check == name {
			return res, true
		}
	}
	return Result{}, false
}

// Passed says whether every check passed.
func (rs Results) Passed() bool { return rs.Failed() == 0 }

// Failed counts the checks that failed.
func (rs Results) Failed() int {
	n := 0
	for _, res := range rs {
		if !res.Passed {
			n++
		}
	}
	return n
}

// Failing says which checks failed and why, or "" when none did.
func (rs Results) Failing() string {
	var out []string
	for _, res := range rs {
		if !res.Passed {
			out = append(out, res.Check+": "+res.Detail)
		}
	}
	return strings.Join(out, "; ")
}
