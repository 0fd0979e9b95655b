package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/idemgate/idemgate/plugin/canon"
)

var canonCommand = &command{
	name:    "canon",
	args:    "[FILE]",
	summary: "print the RFC 8785 canonical form of a JSON document",
	about: `Reads the JSON document in FILE, or standard input when FILE is absent or
"-" (at most 64 MiB), and prints its canonical form (RFC 8785, the JSON
Canonicalization Scheme) followed by a newline: no insignificant
whitespace, members sorted by name, numbers and strings in their one
canonical spelling. This is the body the filter hashes for a JSON request.

A document RFC 8785 does not admit is refused (exit 2) with the byte offset
of the problem: invalid JSON, a duplicate member name, invalid UTF-8, a lone
UTF-16 surrogate, NaN or Infinity, a number that overflows a double, or
nesting deeper than 128 levels.

One deliberate deviation from RFC 8785: a number whose nearest double prints
as another value (1234567890123456789 and 1234567890123456790 both print as
1234567890123456800; 1e-400 as 0) keeps its own digits, laid out by the same
rules, so that different numbers never share a fingerprint. When that
applies, a note on stderr names the byte offsets of those numbers (and
--json lists them in "exact_numbers"); the exit status stays 0.`,
	jsonOK: `{"ok":true,"canonical":"<the canonical text, as a JSON string>","exact_numbers":[<byte offsets>]}`,
	example: `$ echo '{"b":1,"a":2}' | idemctl canon
{"a":2,"b":1}
$ idemctl canon --json body.json
{"ok":true,"canonical":"{\"a\":2,\"b\":1}","exact_numbers":[]}
$ echo '{"account":1234567890123456789}' | idemctl canon
{"account":1234567890123456789}
idemctl: note: 1 number kept exact, not as RFC 8785 writes them (its double denotes another value), at byte offset 11: see idemctl help canon`,
	define: func(fs *flag.FlagSet) action {
		// --json is defined before define runs; its value decides where
		// the note goes.
		asJSON := fs.Lookup("json")
		return func(e *env, args []string) (result, error) {
			return runCanon(e, args, asJSON != nil && asJSON.Value.String() == "true")
		}
	},
}

// canonResult is the --json success object of canon.
type canonResult struct {
	OK        bool   `json:"ok"`
	Canonical string `json:"canonical"`
	// ExactNumbers are the byte offsets of the numbers written by the
	// deviation from RFC 8785; [] when there is none.
	ExactNumbers []int `json:"exact_numbers"`
}

// maxListedOffsets bounds the offsets the stderr note spells out.
const maxListedOffsets = 10

func runCanon(e *env, args []string, asJSON bool) (result, error) {
	src, source, err := readInput(e, args)
	if err != nil {
		return result{}, err
	}
	rep := canon.Report{Exact: []int{}}
	out, err := canon.AppendReport(nil, src, &rep)
	if err != nil {
		return result{}, refused(source, err)
	}
	if len(rep.Exact) > 0 && !asJSON {
		// On stderr: stdout keeps exactly the canonical text, which
		// scripts hash. --json carries the offsets in its object instead.
		fmt.Fprintf(e.stderr, "idemctl: note: %s\n", exactNote(rep.Exact))
	}
	return result{text: string(out), json: canonResult{OK: true, Canonical: string(out), ExactNumbers: rep.Exact}}, nil
}

// exactNote tells the operator that canon departed from RFC 8785 and where.
func exactNote(offsets []int) string {
	var b strings.Builder
	if len(offsets) == 1 {
		b.WriteString("1 number kept exact, not as RFC 8785 writes them (its double denotes another value), at byte offset ")
	} else {
		fmt.Fprintf(&b, "%d numbers kept exact, not as RFC 8785 writes them (their doubles denote other values), at byte offsets ", len(offsets))
	}
	for i, off := range offsets[:min(len(offsets), maxListedOffsets)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(off))
	}
	if len(offsets) > maxListedOffsets {
		b.WriteString(", …")
	}
	b.WriteString(": see idemctl help canon")
	return b.String()
}
