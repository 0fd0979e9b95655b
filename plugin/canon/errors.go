package canon

import (
	"errors"
	"fmt"
)

// Sentinel errors, one per reason a document is refused. Every error returned
// by Append is an *Error that unwraps to one of these, so callers can branch
// with errors.Is and read the byte offset with errors.As.
var (
	ErrSyntax        = errors.New("invalid JSON")
	ErrDuplicateName = errors.New("duplicate member name")
	ErrInvalidUTF8   = errors.New("invalid UTF-8")
	ErrLoneSurrogate = errors.New("lone UTF-16 surrogate")
	ErrNotFinite     = errors.New("NaN and Infinity are not JSON numbers")
	ErrNumberRange   = errors.New("number overflows an IEEE-754 double")
	ErrTooDeep       = errors.New("nesting too deep")
)

// Error is a refused document: the reason and the byte offset in the input at
// which it was found.
type Error struct {
	Offset int    // byte offset into the input
	Err    error  // one of the sentinel errors above
	Detail string // optional, e.g. the duplicated name or the parser's message
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("canon: %v at byte offset %d: %s", e.Err, e.Offset, e.Detail)
	}
	return fmt.Sprintf("canon: %v at byte offset %d", e.Err, e.Offset)
}

func (e *Error) Unwrap() error { return e.Err }
