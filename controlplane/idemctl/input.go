package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxInput bounds what a command reads, so that a wrong pipe (a device, an
// endless stream) ends in an error rather than in reading forever. It is far
// above any body the filter buffers.
const maxInput = 64 << 20

// readInput reads the file named by args, or stdin when there is none or it
// is "-". It returns the bytes and the name to use in messages.
func readInput(e *env, args []string) ([]byte, string, error) {
	if len(args) > 1 {
		return nil, "", usagef("expected at most one FILE, got %d arguments", len(args))
	}
	if len(args) == 0 || args[0] == "-" {
		return readLimited(e.stdin, "stdin")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, "", &ioError{err: err}
	}
	defer f.Close()
	return readLimited(f, args[0])
}

func readLimited(r io.Reader, source string) ([]byte, string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		// A file's error already names the operation and path; keep the cause.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", &ioError{err: fmt.Errorf("%s: %w", source, err)}
	}
	if len(data) > maxInput {
		return nil, "", &tooLargeError{source: source}
	}
	return data, source, nil
}
