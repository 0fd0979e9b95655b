package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/idemgate/idemgate/plugin/canon"
)

var fingerprintCommand = &command{
	name:    "fingerprint",
	args:    "[FILE]",
	summary: "print the request fingerprint the filter computes",
	about: `Prints the fingerprint ("sha256:" and 64 hex digits) that the filter
computes for a request, so that an operator can tell whether two requests
carrying one Idempotency-Key count as the same request (a retry, replayed)
or as different ones (422). The body is read from FILE, or standard input
when FILE is absent or "-" (at most 64 MiB; use /dev/null for no body).

The fingerprint covers the method (upper-cased), the host (--host: the
request's :authority, or the host a route's host_aliases maps it to;
lower-cased, default port :80/:443 dropped; the filter always has one, so
give it to reproduce the filter's fingerprint), the request target
normalized as the filter does (dot segments removed, percent-encodings
normalized, query parameters sorted, fragment dropped), the selected
headers and the body. When the Content-Type is application/json or
application/*+json and the body is not empty, the body counts in its RFC
8785 canonical form (see "idemctl help canon"), so key order and whitespace
do not matter, and --include/--exclude select its fields; otherwise the
body counts byte for byte. A JSON body that is not valid JSON is refused
(exit 2) with the byte offset, as the filter refuses the request.

Field paths use gjson/sjson syntax: member names separated by ".", array
indexes as numbers, "\" escaping a special character ("a\.b" is the member
"a.b"); wildcards, queries and modifiers are refused (exit 2). With
--include the body is first reduced to the included fields that exist;
then every --exclude field is removed.

Headers count only when selected, and one flag both selects a header and
says what the request carried, as curl's -H does: --header 'NAME: VALUE'
selects NAME and gives the request that value (repeat it for a header sent
several times, in order); --header NAME (no colon) selects a header the
request does not carry, which differs from an empty value ('NAME:'). Names
are case-insensitive; values are trimmed of spaces and tabs.`,
	jsonOK: `{"ok":true,"fingerprint":"sha256:<hex>","method":"<METHOD upper-cased>",
 "path":"<TARGET as given>","normalized_path":"<TARGET as hashed>"}`,
	example: `$ idemctl fingerprint --path /payments --exclude metadata.trace_id \
    --header 'X-Tenant: t1' body.json
sha256:<64 hex digits>
$ idemctl fingerprint --json --method put --path '/p/./1?b=2&a=1' </dev/null
{"ok":true,"fingerprint":"sha256:<64 hex digits>","method":"PUT",
 "path":"/p/./1?b=2&a=1","normalized_path":"/p/1?a=1&b=2"}`,
	define: defineFingerprint,
}

// fingerprintResult is the --json success object of fingerprint.
type fingerprintResult struct {
	OK             bool   `json:"ok"`
	Fingerprint    string `json:"fingerprint"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	NormalizedPath string `json:"normalized_path"`
}

// fingerprintFlags are the parsed flags of fingerprint.
type fingerprintFlags struct {
	method, host, path, contentType string
	include, exclude                stringList
	headers                         headerList
}

func defineFingerprint(fs *flag.FlagSet) action {
	f := new(fingerprintFlags)
	fs.StringVar(&f.method, "method", "POST", "HTTP `METHOD` of the request; compared upper-cased")
	fs.StringVar(&f.host, "host", "", "request `HOST`: the :authority the filter saw (after the route's host_aliases); empty when left out")
	fs.StringVar(&f.path, "path", "", "request `TARGET`: path and optional query, as the client sent it (Envoy's :path); required")
	fs.Var(&f.include, "include", "body field `PATH` that counts; repeatable; when given, only included fields count")
	fs.Var(&f.exclude, "exclude", "body field `PATH` that never counts; repeatable")
	fs.Var(&f.headers, "header", "a header that counts: `'NAME: VALUE'` selects NAME and the request carries VALUE (repeat for a header sent several times); NAME alone selects a header the request does not carry; repeatable")
	fs.StringVar(&f.contentType, "content-type", "application/json", "the request's Content-Type `TYPE`; a JSON type (application/json, application/*+json) makes the body count in canonical form, any other type byte for byte")
	return func(e *env, args []string) (result, error) { return f.run(e, args) }
}

func (f *fingerprintFlags) run(e *env, args []string) (result, error) {
	req, sel, err := f.request()
	if err != nil {
		return result{}, err
	}
	body, source, err := readInput(e, args)
	if err != nil {
		return result{}, err
	}
	req.Body = body
	fp, err := canon.Fingerprint(req, sel)
	if err != nil {
		return result{}, refused(source, err)
	}
	return result{text: fp, json: fingerprintResult{
		OK:             true,
		Fingerprint:    fp,
		Method:         req.Method,
		Path:           f.path,
		NormalizedPath: canon.NormalizeTarget(f.path),
	}}, nil
}

// request turns the flags into what canon.Fingerprint takes, checking them
// before any input is read.
func (f *fingerprintFlags) request() (canon.Request, canon.Selection, error) {
	if f.path == "" {
		return canon.Request{}, canon.Selection{}, usagef("--path is required")
	}
	method := strings.ToUpper(f.method)
	if method == "" || strings.ContainsAny(method, " \t\r\n") {
		return canon.Request{}, canon.Selection{}, usagef("--method %q: not an HTTP method", f.method)
	}
	sel := canon.Selection{Include: f.include, Exclude: f.exclude, Headers: f.headers.names}
	if err := sel.Validate(); err != nil {
		return canon.Request{}, canon.Selection{}, &usageError{err: fmt.Errorf("invalid selection: %w", err)}
	}
	req := canon.Request{Method: method, Host: f.host, Target: f.path, Headers: f.headers.headers, ContentType: f.contentType}
	return req, sel, nil
}
