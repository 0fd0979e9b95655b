package policy

import (
	"errors"
	"fmt"
)

// FieldError is a configuration error in one field. Path names it the way
// the configuration is written: "routes[1].max_body_bytes".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// ErrInvalid is wrapped by every error of Parse.
var ErrInvalid = errors.New("invalid idempotency configuration")

func fieldErr(path, format string, args ...any) error {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

// wrapField names the field of an error from a helper, keeping it for
// errors.Is.
func wrapField(path string, err error) error {
	return &FieldError{Path: path, Err: err}
}
