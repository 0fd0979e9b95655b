package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

const overview = `idemctl - operator CLI for idemgate, the idempotency gateway

idemctl computes what the Wasm filter computes, by calling the same Go
package, so that an operator can reproduce a filter decision by hand; it
inspects, deletes, releases and reconciles keys through the control
plane's admin API (the keys commands); and it checks Envoy configurations
for what would break idempotency (check-envoy).

USAGE
  idemctl COMMAND [FLAGS] [ARGS]
  idemctl help [COMMAND]       (also: idemctl --help, idemctl COMMAND --help)

Flags follow the command name and may be mixed with arguments; "--" ends
the flags. Every command accepts --json.
`

const jsonOutputHelp = `JSON OUTPUT
  With --json a command prints exactly one JSON object, followed by a
  newline, on stdout and nothing on stderr (but the line --verbose asks a
  keys command for); the exit status is unchanged.
  Success:  {"ok":true, ...}, as shown under each command.
  Failure:  {"ok":false,"error":{"code":"CODE","message":"...","offset":N}}
  "offset" is the byte offset of the problem in the input; it is present
  only when a JSON document was refused. CODE is one of:
    invalid_json    the input is not JSON (RFC 8259)
    duplicate_name  an object has two members with one name
    invalid_utf8    a string is not valid UTF-8
    lone_surrogate  a \u escape is half of a UTF-16 surrogate pair
    not_finite      NaN or Infinity
    number_range    a number overflows an IEEE-754 double
    too_deep        arrays and objects nested deeper than 128 levels
    too_large       the input exceeds 64 MiB
    usage           unknown command or flag, missing or invalid flag value
    io              FILE cannot be opened or read (exit 2 for check-envoy)
    unavailable     the control plane cannot be reached or failed (keys), or
                    the upstream's reconcile lookup failed (keys reconcile)
    unauthorized    the control plane refused the token (keys)
    not_found       keys get: no record for this scope and key
    conflict        keys release: the record is completed, not in progress;
                    keys reconcile: the record's route does not reconcile
    lease_live      keys release/delete/reconcile: the record's lease still
                    runs (release and delete: --force)
    rejected        the control plane refused the request as invalid (keys)
    internal        a bug in idemctl; please report it
`

const exitStatusHelp = `EXIT STATUS
  0  success, or help that was asked for
  1  I/O error (FILE cannot be opened or read, output cannot be written),
     or a keys command the control plane refused or did not answer,
     or check-envoy found an error-level finding
  2  invalid input (a refused JSON document, input over 64 MiB) or usage
     error (unknown command or flag, missing --path, invalid field path or
     header name); the message on stderr names the byte offset of a
     refused document, e.g.
       idemctl: input.json: duplicate member name at byte offset 7: "a"
     check-envoy: also a FILE that cannot be read, or is not YAML (its
     findings, not exit 1, mean a configuration that fails the checks)
`

// help prints the help asked for on stdout: all of it, or one command's.
func (e *env) help(args []string) int {
	if len(args) == 0 || len(args) == 1 && args[0] == "help" {
		writeHelp(e.stdout)
		return exitOK
	}
	c, rest := lookup(commands, args)
	if c == nil || len(rest) > 0 {
		return e.fail(nil, false, usagef("unknown help topic %q", strings.Join(args, " ")))
	}
	writeCommandHelp(e.stdout, c)
	fmt.Fprintln(e.stdout)
	io.WriteString(e.stdout, jsonOutputHelp+"\n"+exitStatusHelp)
	return exitOK
}

func writeHelp(w io.Writer) {
	io.WriteString(w, overview+"\nCOMMANDS\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-14s %s\n", "help", "print this help, or one command's")
	for _, c := range commands {
		fmt.Fprintln(w)
		writeCommandHelp(w, c)
	}
	fmt.Fprintln(w)
	io.WriteString(w, jsonOutputHelp+"\n"+exitStatusHelp)
}

// writeCommandHelp documents one command; its flag list comes from the
// command's own FlagSet.
func writeCommandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "%s\n  %s\n\n", synopsis(c), c.summary)
	fmt.Fprintf(w, "%s\n\n  FLAGS\n", indent(c.about, "  "))
	fs, _, _ := c.flagSet()
	fs.VisitAll(func(f *flag.Flag) { writeFlag(w, f) })
	fmt.Fprintf(w, "\n  JSON OUTPUT ON SUCCESS\n%s\n", indent(c.jsonOK, "    "))
	fmt.Fprintf(w, "\n  EXAMPLE\n%s\n", indent(c.example, "    "))
}

func synopsis(c *command) string {
	return strings.TrimSpace("idemctl " + c.name + " [FLAGS] " + c.args)
}

// writeFlag prints one flag as Go's flag.PrintDefaults would, but with the
// "--" spelling the help uses throughout.
func writeFlag(w io.Writer, f *flag.Flag) {
	arg, usage := flag.UnquoteUsage(f)
	line := "    --" + f.Name
	if arg != "" {
		line += " " + arg
	}
	if f.DefValue != "" && f.DefValue != "false" {
		usage += fmt.Sprintf(" (default %q)", f.DefValue)
	}
	fmt.Fprintf(w, "%s\n%s\n", line, indent(wrap(usage, 68), "        "))
}

// writeShortUsage is what a usage error prints after its message.
func writeShortUsage(w io.Writer, c *command) {
	if c == nil {
		names := make([]string, 0, len(commands)+1)
		for _, c := range commands {
			names = append(names, c.name)
		}
		names = append(names, "help")
		fmt.Fprintf(w, "usage: idemctl COMMAND [FLAGS] [ARGS]   (commands: %s)\n", strings.Join(names, ", "))
		fmt.Fprintln(w, "Run 'idemctl help' for details.")
		return
	}
	fmt.Fprintf(w, "usage: %s\nRun 'idemctl help %s' for details.\n", synopsis(c), c.name)
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// wrap breaks s into lines of at most width bytes, between words.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(s) {
		switch {
		case n == 0:
		case n+1+len(word) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}
