package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Exit statuses; documented in the help text.
const (
	exitOK      = 0
	exitFailure = 1 // I/O errors, and bugs
	exitInvalid = 2 // invalid input or usage
)

// env is what a command may touch, so that tests can run it in memory.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// A command is one entry of the dispatch table. define adds the command's own
// flags to a fresh FlagSet (--json is already there) and returns the action
// to run on the positional arguments once the flags are parsed; help is
// generated from that same FlagSet so it cannot drift from the flags.
//
// A command group such as "keys get|delete|release" is added as one more
// entry per subcommand, named "keys get" and so on; lookup matches names of
// one or more words.
type command struct {
	name    string // as typed after "idemctl"; may hold spaces
	args    string // synopsis of the positional arguments, e.g. "[FILE]"
	summary string // one line for the command list
	about   string // what it does, in paragraphs
	jsonOK  string // the success object printed with --json
	example string // shell session, without indentation
	define  func(fs *flag.FlagSet) action
}

// An action runs a command whose flags are parsed.
type action func(e *env, args []string) (result, error)

// A result is a command's success: text for humans, or an object for --json.
type result struct {
	text string // printed followed by a newline
	json any    // marshaled as is; it carries "ok" itself
	// exit is the status after the output: 0, or for a command whose
	// output reports a failure itself (check-envoy's findings) 1 or 2.
	exit int
}

// commands is the dispatch table, in the order the help lists them.
var commands = []*command{canonCommand, fingerprintCommand, keysGetCommand, keysDeleteCommand, keysReleaseCommand, keysReconcileCommand, keysListCommand, checkEnvoyCommand}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		return e.fail(nil, false, usagef("no command given"))
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return e.help(args[1:])
	}
	cmd, rest := lookup(commands, args)
	if cmd == nil {
		if strings.HasPrefix(args[0], "-") {
			return e.fail(nil, wantsJSON(args), usagef("flag %s before the command: flags go after the command name", args[0]))
		}
		return e.fail(nil, wantsJSON(args), usagef("unknown command %q", args[0]))
	}
	return e.execute(cmd, rest)
}

// lookup finds in table the command named by the longest run of leading
// words of args, and returns it with the arguments after its name.
func lookup(table []*command, args []string) (*command, []string) {
	var best *command
	var rest []string
	for _, c := range table {
		words := strings.Fields(c.name)
		if len(words) <= len(args) && slices.Equal(words, args[:len(words)]) &&
			(best == nil || len(words) > len(strings.Fields(best.name))) {
			best, rest = c, args[len(words):]
		}
	}
	return best, rest
}

// flagSet builds the command's flags: --json, then its own.
func (c *command) flagSet() (*flag.FlagSet, *bool, action) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by run, in one format
	asJSON := fs.Bool("json", false, "print exactly one JSON object on stdout, for success and failure alike (see JSON OUTPUT)")
	return fs, asJSON, c.define(fs)
}

func (e *env) execute(c *command, args []string) int {
	fs, asJSON, act := c.flagSet()
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return e.help(strings.Fields(c.name))
	}
	if err != nil {
		// Parsing may have stopped before --json; honour it anyway.
		return e.fail(c, wantsJSON(args), &usageError{err: err})
	}
	res, err := act(e, pos)
	if err != nil {
		return e.fail(c, *asJSON, err)
	}
	return e.succeed(*asJSON, res)
}

// parseInterspersed parses flags mixed with positional arguments
// ("idemctl fingerprint body.json --path /x"), which operators type more
// often than Go's flags-first order; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantsJSON reports whether --json appears among the flags, for errors found
// before or while parsing them.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "json" {
			continue
		}
		if !hasValue {
			return true
		}
		b, err := strconv.ParseBool(value)
		return err == nil && b
	}
	return false
}

func (e *env) succeed(asJSON bool, res result) int {
	var err error
	if asJSON {
		err = writeJSON(e.stdout, res.json)
	} else {
		_, err = io.WriteString(e.stdout, res.text+"\n")
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "idemctl: writing output: %v\n", err)
		return exitFailure
	}
	return res.exit
}

// fail reports err and returns the exit status. c is the command that failed,
// nil before one was found; usage errors point at its help.
func (e *env) fail(c *command, asJSON bool, err error) int {
	info := classify(err)
	if asJSON {
		if werr := writeJSON(e.stdout, failure{Error: info}); werr != nil {
			fmt.Fprintf(e.stderr, "idemctl: writing output: %v\n", werr)
			return exitFailure
		}
		return info.exit
	}
	fmt.Fprintf(e.stderr, "idemctl: %s\n", info.Message)
	if info.Code == codeUsage {
		writeShortUsage(e.stderr, c)
	}
	return info.exit
}

// failure is the --json shape of every error.
type failure struct {
	OK    bool      `json:"ok"` // always false
	Error errorInfo `json:"error"`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // canonical text stays readable: no \u003c for '<'
	return enc.Encode(v)
}
