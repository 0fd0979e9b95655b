package main

import (
	"errors"
	"fmt"

	"github.com/idemgate/idemgate/plugin/canon"
)

// Error codes of the --json failure object; documented in the help text.
const (
	codeUsage    = "usage"
	codeIO       = "io"
	codeTooLarge = "too_large"
	codeInternal = "internal"

	// The keys commands' failures: the control plane refused or could not
	// be reached.
	codeUnavailable  = "unavailable"
	codeUnauthorized = "unauthorized"
	codeNotFound     = "not_found"
	codeConflict     = "conflict"
	codeLeaseLive    = "lease_live"
	codeRejected     = "rejected"
)

// inputCodes names each reason canon refuses a document.
var inputCodes = []struct {
	err  error
	code string
}{
	{canon.ErrSyntax, "invalid_json"},
	{canon.ErrDuplicateName, "duplicate_name"},
	{canon.ErrInvalidUTF8, "invalid_utf8"},
	{canon.ErrLoneSurrogate, "lone_surrogate"},
	{canon.ErrNotFinite, "not_finite"},
	{canon.ErrNumberRange, "number_range"},
	{canon.ErrTooDeep, "too_deep"},
}

// errorInfo is an error as reported: the "error" member of the --json
// failure object, and the exit status.
type errorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Offset  *int   `json:"offset,omitempty"` // byte offset, for refused documents only
	exit    int
}

func classify(err error) errorInfo {
	var (
		usage *usageError
		bad   *invalidInput
		ioErr *ioError
		large *tooLargeError
		svc   *serviceError
		unr   *unreadableError
	)
	switch {
	case errors.As(err, &unr):
		return errorInfo{Code: codeIO, Message: err.Error(), exit: exitInvalid}
	case errors.As(err, &usage):
		return errorInfo{Code: codeUsage, Message: err.Error(), exit: exitInvalid}
	case errors.As(err, &bad):
		off := bad.err.Offset
		return errorInfo{Code: inputCode(bad.err), Message: err.Error(), Offset: &off, exit: exitInvalid}
	case errors.As(err, &large):
		return errorInfo{Code: codeTooLarge, Message: err.Error(), exit: exitInvalid}
	case errors.As(err, &ioErr):
		return errorInfo{Code: codeIO, Message: err.Error(), exit: exitFailure}
	case errors.As(err, &svc):
		return errorInfo{Code: svc.code, Message: err.Error(), exit: exitFailure}
	}
	// Nothing else is expected; a bug is reported, not disguised as bad input.
	return errorInfo{Code: codeInternal, Message: err.Error(), exit: exitFailure}
}

func inputCode(err error) string {
	for _, c := range inputCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "invalid_json" // a reason added to canon later is still bad input
}

// usageError is a command line that cannot be run: unknown command or flag,
// missing or invalid flag value, extra arguments.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// ioError is input that could not be read, or output that could not be
// written.
type ioError struct{ err error }

func (e *ioError) Error() string { return e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

// tooLargeError is input beyond maxInput.
type tooLargeError struct{ source string }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s: input exceeds the %d MiB limit", e.source, maxInput>>20)
}

// invalidInput is a document canon refused, named by where it came from. Its
// message leaves out canon's own "canon: " prefix: the operator named a file,
// not a package.
type invalidInput struct {
	source string
	err    *canon.Error
}

func (e *invalidInput) Error() string {
	msg := fmt.Sprintf("%s: %v at byte offset %d", e.source, e.err.Err, e.err.Offset)
	if e.err.Detail != "" {
		msg += ": " + e.err.Detail
	}
	return msg
}

func (e *invalidInput) Unwrap() error { return e.err }

// refused wraps err as invalidInput when canon refused the document, and
// returns it unchanged otherwise.
func refused(source string, err error) error {
	var ce *canon.Error
	if errors.As(err, &ce) {
		return &invalidInput{source: source, err: ce}
	}
	return err
}
