package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/idemgate/idemgate/envoy/envoycheck"
)

var checkEnvoyCommand = &command{
	name:    "check-envoy",
	args:    "FILE...",
	summary: "check Envoy bootstraps against Envoy's API and idemgate's rules",
	about: `Checks each FILE, an Envoy v3 static bootstrap in YAML or JSON (at most
64 MiB; "-" is standard input), in two steps.

Schema: the file is decoded into Envoy's own API types (go-control-plane),
unknown fields and wrong enum values or durations refused, and validated
with Envoy's generated rules; every typed_config inside it is unpacked and
validated the same way. An unknown type URL is reported by name.

Idempotency: for every idemgate wasm filter found in a listener's
http_connection_manager, its policy is parsed as the filter parses it, and
these are flagged: a retry_policy (route or virtual host, unless
num_retries is 0), a hedge or a request mirror on a route whose traffic the
policy governs (Envoy would re-send a request the upstream may have
executed; internal redirects get a warning); a listener, route or buffer
filter limit below the policy's max_body_bytes, or a listener or buffer
filter limit below its max_stored_response_bytes (Envoy would replace a
response the filter stores with its own 500); a scope.metadata that no
filter before ours writes (jwt_authn missing, placed after ours, or writing
its payload under another key, or turned off on a governed route): the
principal would be absent;
control_plane.cluster missing from the static
clusters, or speaking HTTP/2; an invalid policy; the filter after the
router; fail_open or FAIL_OPEN on the filter; a control-plane cluster
idle_timeout not below the control plane's 5-minute idle close; a route
timeout not below the lease (warnings for the last two). Routes the policy
selects through Envoy's router: a route whose
metadata.filter_metadata.idemgate.route names no policy route (the filter
would refuse its requests with 500), a policy match.route_name that names
no route of the route_config, and (a warning) a policy route no route
ever sends requests to.

Each finding is printed on stdout as FILE: PATH: SEVERITY: MESSAGE, where
PATH locates it by the field names written in the YAML. A clean file
prints FILE: ok. Exit status 0 when no finding is an error (warnings
allowed), 1 when one is, 2 when a FILE cannot be read or is not YAML.`,
	jsonOK: `{"ok":true|false,"files":[{"file":"<FILE>","findings":[
  {"severity":"error"|"warning","rule":"<RULE>","path":"<PATH>","message":"..."}]}]}
"ok" is false and the exit status 1 when some finding is an error (2 when
a file is not YAML); an unreadable FILE gives the failure object instead.`,
	example: `$ idemctl check-envoy envoy/envoy.yaml
envoy/envoy.yaml: ok
$ idemctl check-envoy bad.yaml
bad.yaml: static_resources.listeners[0]....routes[0].route.retry_policy: error: retries traffic the idemgate policy governs (...)`,
	define: func(*flag.FlagSet) action { return runCheckEnvoy },
}

// checkEnvoyResult is the --json object of check-envoy, clean or not.
type checkEnvoyResult struct {
	OK    bool             `json:"ok"`
	Files []checkedFileOut `json:"files"`
}

type checkedFileOut struct {
	File     string               `json:"file"`
	Findings []envoycheck.Finding `json:"findings"`
}

// unreadableError is a FILE check-envoy cannot read: bad input (exit 2),
// since exit 1 means findings for this command.
type unreadableError struct{ err error }

func (e *unreadableError) Error() string { return e.err.Error() }
func (e *unreadableError) Unwrap() error { return e.err }

func runCheckEnvoy(e *env, args []string) (result, error) {
	if len(args) == 0 {
		return result{}, usagef("expected at least one FILE")
	}
	// Read everything first: an unreadable file is reported before any
	// findings, not in the middle of them.
	inputs := make([][]byte, len(args))
	for i, name := range args {
		data, err := readEnvoyFile(e, name)
		if err != nil {
			return result{}, err
		}
		inputs[i] = data
	}
	res := checkEnvoyResult{OK: true}
	var text []string
	badInput := false
	for i, name := range args {
		fs := envoycheck.Check(inputs[i])
		if fs == nil {
			fs = []envoycheck.Finding{} // "findings":[] rather than null
		}
		res.Files = append(res.Files, checkedFileOut{File: name, Findings: fs})
		if envoycheck.HasErrors(fs) {
			res.OK = false
		}
		if len(fs) == 0 {
			text = append(text, name+": ok")
		}
		for _, f := range fs {
			text = append(text, name+": "+f.String())
			badInput = badInput || f.Rule == envoycheck.RuleYAML
		}
	}
	out := result{text: strings.Join(text, "\n"), json: res}
	switch {
	case badInput:
		out.exit = exitInvalid
	case !res.OK:
		out.exit = exitFailure
	}
	return out, nil
}

func readEnvoyFile(e *env, name string) ([]byte, error) {
	if name == "-" {
		data, _, err := readLimited(e.stdin, "stdin")
		return data, asUnreadable(err)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, &unreadableError{err: err}
	}
	defer f.Close()
	data, _, err := readLimited(f, name)
	return data, asUnreadable(err)
}

// asUnreadable turns readLimited's I/O error into bad input; too_large
// already exits 2.
func asUnreadable(err error) error {
	var ioErr *ioError
	if errors.As(err, &ioErr) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return &unreadableError{err: pe}
		}
		return &unreadableError{err: fmt.Errorf("%w", ioErr.err)}
	}
	return err
}
