package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Outcome is what becomes of the key after an upstream response.
type Outcome int

const (
	// Store: a definite outcome; the response is kept and replayed.
	Store Outcome = iota
	// Release: evidence that the operation did not run (a transactional
	// failure, or the upstream's not-executed header); the key is freed
	// so a retry may execute.
	Release
	// Indeterminate: the operation may have run and the answer does not
	// say how it ended (a proxy's 502/503/504 after the app may have
	// executed); handled like a request that got no response, by the
	// route's on_indeterminate.
	Indeterminate
)

func (o Outcome) String() string {
	switch o {
	case Release:
		return "release"
	case Indeterminate:
		return "indeterminate"
	}
	return "store"
}

// Final response statuses that a status set may name.
const (
	minStatus = 200
	maxStatus = 599
)

// StatusSet is a set of final HTTP statuses (200–599), kept as a bitmap so
// that Classify is one lookup per response.
type StatusSet struct {
	bits [(maxStatus + 1 + 63) / 64]uint64
}

// Has reports whether the set holds status.
func (s *StatusSet) Has(status int) bool {
	return status >= minStatus && status <= maxStatus && s.bits[status/64]&(1<<(status%64)) != 0
}

func (s *StatusSet) add(lo, hi int) {
	for c := lo; c <= hi; c++ {
		s.bits[c/64] |= 1 << (c % 64)
	}
}

// complement is every final status not in s.
func (s StatusSet) complement() StatusSet {
	var c StatusSet
	for st := minStatus; st <= maxStatus; st++ {
		if !s.Has(st) {
			c.add(st, st)
		}
	}
	return c
}

// firstShared returns the lowest status in both sets, or 0.
func (s *StatusSet) firstShared(o *StatusSet) int {
	for st := minStatus; st <= maxStatus; st++ {
		if s.Has(st) && o.Has(st) {
			return st
		}
	}
	return 0
}

// parseStatusSet reads entries such as "2xx" (a class), "404" (one status)
// and "500-504" (an inclusive range). The index of a bad entry is returned
// so the error can name it.
func parseStatusSet(entries []string) (StatusSet, int, error) {
	var s StatusSet
	for i, e := range entries {
		lo, hi, err := parseStatusEntry(e)
		if err != nil {
			return s, i, err
		}
		s.add(lo, hi)
	}
	return s, -1, nil
}

func parseStatusEntry(e string) (lo, hi int, err error) {
	if len(e) == 3 && (e[1] == 'x' || e[1] == 'X') && (e[2] == 'x' || e[2] == 'X') {
		if e[0] < '2' || e[0] > '5' {
			return 0, 0, fmt.Errorf("%q: the class must be 2xx, 3xx, 4xx or 5xx", e)
		}
		lo = int(e[0]-'0') * 100
		return lo, lo + 99, nil
	}
	a, b, isRange := strings.Cut(e, "-")
	if lo, err = parseStatus(a); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", e, err)
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parseStatus(b); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", e, err)
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("%q: the range is empty", e)
	}
	return lo, hi, nil
}

func parseStatus(s string) (int, error) {
	if len(s) != 3 {
		return 0, fmt.Errorf("want a status (404), a range (500-504) or a class (5xx)")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < minStatus || n > maxStatus {
		return 0, fmt.Errorf("a final status is 200 to 599")
	}
	return n, nil
}

// Default status sets (DESIGN.md: release only on evidence that the
// operation did not run). 408 Request Timeout, 425 Too Early and 429 Too
// Many Requests say the request was not processed: released. 502, 503 and
// 504 are what a proxy between the filter and the app answers after the
// app may have run (a reset, a timeout): indeterminate. Every other status,
// 500 included ("the order went through, then the answer failed"), is a
// definite outcome and is stored.
var (
	DefaultReleaseStatuses       = []string{"408", "425", "429"}
	DefaultIndeterminateStatuses = []string{"502", "503", "504"}
	defaultRelease               = mustStatusSet(DefaultReleaseStatuses)
	defaultIndeterminate         = mustStatusSet(DefaultIndeterminateStatuses)
)

// without is s minus the statuses of o.
func (s StatusSet) without(o *StatusSet) StatusSet {
	for i := range s.bits {
		s.bits[i] &^= o.bits[i]
	}
	return s
}

// union is s plus the statuses of o.
func (s StatusSet) union(o *StatusSet) StatusSet {
	for i := range s.bits {
		s.bits[i] |= o.bits[i]
	}
	return s
}

func mustStatusSet(entries []string) StatusSet {
	s, _, err := parseStatusSet(entries)
	if err != nil {
		panic(err) // package defaults only
	}
	return s
}
