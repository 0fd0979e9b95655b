package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// DefaultLookupTimeout bounds one lookup (--reconcile-timeout).
const DefaultLookupTimeout = 5 * time.Second

// answerSlack is what an answer may carry beyond the stored-response cap:
// the JSON framing, base64 of the body, the headers' escaping.
const answerSlack = 64 << 10

// MaxAnswerBytes is the largest lookup answer read for a stored-response
// cap of maxStored bytes; a longer one is a failed lookup.
func MaxAnswerBytes(maxStored int) int64 {
	// base64 makes the body 4/3 longer.
	return 4*((int64(maxStored)+2)/3) + answerSlack
}

// LookupError is a failed lookup: no trustworthy answer. It is never read
// as "not executed".
type LookupError struct {
	Target string
	Reason string
	Err    error // the cause, when there is one
}

func (e *LookupError) Error() string {
	msg := "reconcile lookup (target " + e.Target + "): " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *LookupError) Unwrap() error { return e.Err }

// Client asks upstreams whether a request ran, one POST per lookup.
type Client struct {
	targets  map[string]Target
	http     *http.Client
	timeout  time.Duration
	maxBytes int64
}

// NewClient returns a lookup client for targets. timeout bounds a lookup
// (0: DefaultLookupTimeout); maxAnswer bounds an answer's bytes (see
// MaxAnswerBytes). hc nil means a client of its own that never follows
// redirects.
func NewClient(targets []Target, hc *http.Client, timeout time.Duration, maxAnswer int64) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	// A redirect is not an answer: following it would re-send the
	// credential's request somewhere the operator did not configure.
	h := *hc
	h.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if timeout <= 0 {
		timeout = DefaultLookupTimeout
	}
	m := make(map[string]Target, len(targets))
	for _, t := range targets {
		m[t.Name] = t
	}
	return &Client{targets: m, http: &h, timeout: timeout, maxBytes: maxAnswer}
}

// HasTarget reports whether name (or the default target for "") is
// configured.
func (c *Client) HasTarget(name string) bool {
	_, ok := c.targets[targetName(name)]
	return ok
}

// Targets lists the configured target names.
func (c *Client) Targets() []string {
	out := make([]string, 0, len(c.targets))
	for n := range c.targets {
		out = append(out, n)
	}
	return out
}

func targetName(name string) string {
	if name == "" {
		return DefaultTarget
	}
	return name
}

// Lookup asks target whether the attempt of q ran. It returns an answer
// only for an HTTP 200 whose body is exactly one valid ReconcileAnswer;
// every other outcome (no such target, a transport error or timeout,
// another status, a redirect, an oversized or malformed body, an unknown
// outcome, "executed" without a valid response) is a *LookupError.
func (c *Client) Lookup(ctx context.Context, target string, q api.ReconcileQuery) (api.ReconcileAnswer, error) {
	target = targetName(target)
	fail := func(reason string, err error) (api.ReconcileAnswer, error) {
		return api.ReconcileAnswer{}, &LookupError{Target: target, Reason: reason, Err: err}
	}
	t, ok := c.targets[target]
	if !ok {
		return fail("no reconcile target "+target+" is configured on this control plane", nil)
	}
	body, err := json.Marshal(q)
	if err != nil {
		return fail("cannot encode the query", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL(q.Key, q.Attempt, q.Scope), bytes.NewReader(body))
	if err != nil {
		return fail("cannot build the request", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if t.Credential != "" {
		req.Header.Set("Authorization", "Bearer "+t.Credential)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fail("no answer", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return fail(fmt.Sprintf("reading the answer (HTTP %d)", resp.StatusCode), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Sprintf("HTTP %d; only 200 carries an answer", resp.StatusCode), nil)
	}
	if int64(len(b)) > c.maxBytes {
		return fail(fmt.Sprintf("the answer is longer than %d bytes", c.maxBytes), nil)
	}
	a, err := decodeAnswer(b)
	if err != nil {
		return fail("malformed answer", err)
	}
	return a, nil
}

// decodeAnswer reads exactly one ReconcileAnswer: no unknown field, no
// member named twice, nothing after it, and valid by
// api.ValidateReconcileAnswer.
func decodeAnswer(b []byte) (api.ReconcileAnswer, error) {
	var a api.ReconcileAnswer
	if err := api.CheckDuplicateMembers(b); err != nil {
		return a, err
	}
	if err := exactNames(b); err != nil {
		return a, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return api.ReconcileAnswer{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return api.ReconcileAnswer{}, errors.New("data after the JSON object")
	}
	if err := api.ValidateReconcileAnswer(a); err != nil {
		return api.ReconcileAnswer{}, err
	}
	return a, nil
}

// exactNames refuses a member of the answer, or of its response, not
// spelled exactly as the contract spells it: encoding/json matches names
// without regard to case, so {"OUTCOME":"not_executed"} would be read as
// an outcome, and beside "outcome" as a duplicate the check above cannot
// see, whose value another parser may read the other way.
func exactNames(b []byte) error {
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return nil // not an object: the decoder says what is wrong
	}
	for name, v := range top {
		switch name {
		case "outcome", "retry_after_ms":
		case "response":
			var resp map[string]json.RawMessage
			if json.Unmarshal(v, &resp) != nil {
				continue // null, or not an object: the decoder says
			}
			for name := range resp {
				switch name {
				case "status", "headers", "body", "body_omitted":
				default:
					return fmt.Errorf("response: unknown member %q", name)
				}
			}
		default:
			return fmt.Errorf("unknown member %q", name)
		}
	}
	return nil
}
