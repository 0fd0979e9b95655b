package store

import (
	"context"
	"errors"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Pending is a record whose attempt the reconciler asks the upstream
// about: its scope and key, the token of the attempt (forwarded as the
// attempt header), the lookup target, the stored fingerprint form, when it
// was reserved and how many lookups left it unresolved.
type Pending struct {
	Scope, Key, Token, Target, Fingerprint string
	CreatedAt                              time.Time
	Attempts                               int
}

var errNotImplemented = errors.New("store: reconcile: not implemented yet")

// ClaimDue claims up to n records whose lookup is due, each for claim.
func (s *Store) ClaimDue(ctx context.Context, n int, claim time.Duration) ([]Pending, error) {
	return nil, errNotImplemented
}

// LoadForReconcile reads one record for the admin command.
func (s *Store) LoadForReconcile(ctx context.Context, scope, key string) (Pending, *api.Record, bool, error) {
	return Pending{}, nil, false, errNotImplemented
}

// ApplyExecuted completes the record with resp iff p.Token still holds it
// indeterminate.
func (s *Store) ApplyExecuted(ctx context.Context, p Pending, resp api.StoredResponse) (bool, error) {
	return false, errNotImplemented
}

// ApplyNotExecuted deletes the record iff p.Token still holds it
// indeterminate.
func (s *Store) ApplyNotExecuted(ctx context.Context, p Pending) (bool, error) {
	return false, errNotImplemented
}

// Postpone re-files p for after from now and records the attempt.
func (s *Store) Postpone(ctx context.Context, p Pending, after time.Duration, last string) error {
	return errNotImplemented
}
