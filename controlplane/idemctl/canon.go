package main

import (
	"flag"

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
nesting deeper than 128 levels.`,
	jsonOK: `{"ok":true,"canonical":"<the canonical text, as a JSON string>"}`,
	example: `$ echo '{"b":1,"a":2}' | idemctl canon
{"a":2,"b":1}
$ idemctl canon --json body.json
{"ok":true,"canonical":"{\"a\":2,\"b\":1}"}`,
	define: func(*flag.FlagSet) action { return runCanon },
}

// canonResult is the --json success object of canon.
type canonResult struct {
	OK        bool   `json:"ok"`
	Canonical string `json:"canonical"`
}

func runCanon(e *env, args []string) (result, error) {
	src, source, err := readInput(e, args)
	if err != nil {
		return result{}, err
	}
	out, err := canon.Append(nil, src)
	if err != nil {
		return result{}, refused(source, err)
	}
	return result{text: string(out), json: canonResult{OK: true, Canonical: string(out)}}, nil
}
