package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// The keys commands talk to the control plane's admin API. They share their
// flags; each mutating command supports --dry-run, and every JSON answer
// carries "effect", so that an automated caller can retry safely and tell
// what happened.
var (
	keysGetCommand = &command{
		name:    "keys get",
		summary: "show a key's record (state, fingerprint, times, status)",
		about: `Shows the record the control plane holds for --scope and --key: its state
(in_progress, indeterminate or completed), fingerprint (the hash the control
plane keeps, "k1:" or "s1:" + hex, not what idemctl fingerprint prints),
creation, expiry and lease times, and the stored status. The stored body is left out unless --body is given:
stored responses carry personal data. A key with no record exits 1 with
code not_found.`,
		jsonOK:  `{"ok":true,"effect":"noop","record":{"scope":…,"key":…,"state":…,"fingerprint":…,…}}`,
		example: `$ idemctl keys get --scope tenant-7 --key 8e1f… --json`,
		define:  defineKeys(keysGet, keysReading),
	}
	keysDeleteCommand = &command{
		name:    "keys delete",
		summary: "delete a key's record, whatever its state",
		about: `Deletes the record of --scope and --key, in progress or completed: the
next request with that key executes again. Deleting an absent record is
not an error: the effect is noop and the exit status 0. With --dry-run
nothing changes and the effect says what would happen (would_delete or
noop).
` + leaseNote,
		jsonOK:  `{"ok":true,"effect":"deleted"|"noop"|"would_delete","record":{…the record before…}}`,
		example: `$ idemctl keys delete --scope tenant-7 --key 8e1f… --dry-run`,
		define:  defineKeys(keysDelete, keysMutating),
	}
	keysReleaseCommand = &command{
		name:    "keys release",
		summary: "free an in-progress or indeterminate key so that a retry may execute",
		about: `Frees the in-progress or indeterminate record of --scope and --key whatever
its holder, as a transactional failure would: use it when you know the
operation did not run (for example after an indeterminate failure you have
checked by hand).
A completed record is refused (code conflict, exit 1): delete it instead if
you mean to. An absent record is a noop (exit 0). --dry-run changes
nothing and reports would_release or noop.
` + leaseNote + `
` + edgeNote,
		jsonOK:  `{"ok":true,"effect":"released"|"noop"|"would_release","record":{…the record before…},"edge_caches_stop_within":"…"}`,
		example: `$ idemctl keys release --scope tenant-7 --key 8e1f…`,
		define:  defineKeys(keysRelease, keysMutating),
	}
	keysReconcileCommand = &command{
		name:    "keys reconcile",
		args:    "[KEY]",
		summary: "ask the upstream now whether an indeterminate key's request ran, and apply its answer",
		about: `Asks the upstream's lookup URL (the control plane's --reconcile-url for the
record's target) whether the request of the indeterminate record of --scope
and KEY (or --key) ran, as the control plane's reconciler does on its own,
and applies the answer: executed completes the record with the upstream's
response (retries replay it), not_executed releases it (a retry executes),
unknown leaves it indeterminate. A failed lookup (no answer, a status other
than 200, a malformed answer) changes nothing and fails with code
unavailable. Only records reserved on a route with on_indeterminate
reconcile can be asked about (else code conflict): their requests carried
the attempt id the upstream recorded.
--dry-run asks with dry_run (the upstream records nothing) and changes
nothing: the effect says what would happen (would_complete, would_release,
or noop). An absent or completed record is a noop; a record whose lease
still runs is refused (code lease_live).`,
		jsonOK:  `{"ok":true,"effect":"completed"|"released"|"would_complete"|"would_release"|"noop","record":{…the record before…},"answer":{"outcome":…,"response":{"status":…,"headers":…},"retry_after_ms":…}}`,
		example: `$ idemctl keys reconcile 8e1f… --scope tenant-7 --dry-run`,
		define:  defineKeys(keysReconcile, keysReconciling),
	}
	keysListCommand = &command{
		name:    "keys list",
		summary: "list the keys in progress or indeterminate, to find burned keys",
		about: `Lists the records in --state indeterminate (the outcome of a forwarded
request is unknown: retries are refused until an operator or the TTL
resolves it) or in_progress, of one --scope or of every scope. The control
plane SCANs Redis (every master of a Cluster) a page at a time; idemctl
follows the pages until the scan is complete or --timeout ends. Records
only, never stored bodies. A record created or deleted during the scan may
or may not be listed. Resolve what you find with keys release (the
operation did not run) or keys delete.`,
		jsonOK:  `{"ok":true,"effect":"noop","count":N,"records":[{"scope":…,"key":…,"state":…,…}]}`,
		example: `$ idemctl keys list --state indeterminate --scope tenant-7 --json`,
		define:  defineKeysList,
	}
)

// edgeBound is how soon filters stop replaying a deleted or released
// record from their edge caches: they poll the edge epoch every
// api.EdgeEpochPoll, and a poll takes at most the filter's control-plane
// timeout.
var edgeBound = fmt.Sprintf("%v (api.EdgeEpochPoll) + the filter's control-plane timeout, while the control plane is reachable", api.EdgeEpochPoll)

const leaseNote = `A record in progress whose lease still runs is refused (code lease_live,
exit 1; the message names the lease end), --dry-run included: its request
may still be executing, and freeing the key lets the retry that follows run
it a second time. Wait for the lease to end, or give --force when you know
it is not running.`

const edgeNote = `Filters keep completed records in per-Envoy edge caches; a delete or
release (not a dry run) changes the control plane's edge epoch, and every
filter stops replaying entries filled before within the bound printed
(api.EdgeEpochPoll plus the filter's control-plane timeout) while it can
reach the control plane. If the control plane could not change the epoch
the command fails (code unavailable): the record changed, the edges were
not told, and running it again is safe.`

// keysFlags are the flags every keys command takes.
type keysFlags struct {
	addr, token, scope, key string
	timeout                 time.Duration
	dryRun, body, force     bool
	verbose                 bool
}

// verboseUsage documents --verbose for every keys command.
const verboseUsage = "print on stderr which Redis node(s) answered (the control plane's Idemgate-Redis-Node header)"

// headerRedisNode is the control plane's answer header naming the Redis
// node(s) that ran the operation.
const headerRedisNode = "Idemgate-Redis-Node"

type keysAction func(ctx context.Context, c *adminClient, f *keysFlags) (result, error)

// keysKind says which flags a keys command takes beyond the common ones.
type keysKind int

const (
	keysReading     keysKind = iota // --body
	keysMutating                    // --dry-run, --force
	keysReconciling                 // --dry-run; the key may be the argument
)

func defineKeys(act keysAction, kind keysKind) func(fs *flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		f := &keysFlags{}
		fs.StringVar(&f.addr, "addr", envOr("IDEM_CONTROLPLANE_ADDR", "127.0.0.1:8081"),
			"control plane ADDRESS: host:port or a URL (env IDEM_CONTROLPLANE_ADDR)")
		fs.StringVar(&f.token, "token", envOr("IDEM_ADMIN_TOKEN", os.Getenv("IDEM_CONTROLPLANE_TOKEN")),
			"bearer TOKEN for the admin API (env IDEM_ADMIN_TOKEN, else IDEM_CONTROLPLANE_TOKEN)")
		fs.StringVar(&f.scope, "scope", "", "the record's SCOPE, as the filter sends it; required")
		keyUsage := "the Idempotency-Key KEY, as the filter sends it; required"
		if kind == keysReconciling {
			keyUsage = "the Idempotency-Key KEY, as the filter sends it; or give it as the argument"
		}
		fs.StringVar(&f.key, "key", "", keyUsage)
		fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "give up after DURATION")
		fs.BoolVar(&f.verbose, "verbose", false, verboseUsage)
		switch kind {
		case keysMutating:
			fs.BoolVar(&f.dryRun, "dry-run", false, "change nothing; report what would happen")
			fs.BoolVar(&f.force, "force", false, "also free a record in progress whose lease still runs (its request may still be executing: the retry that follows may run it twice)")
		case keysReconciling:
			fs.BoolVar(&f.dryRun, "dry-run", false, "ask with dry_run (the upstream records nothing) and change nothing; report what would happen")
		default:
			fs.BoolVar(&f.body, "body", false, "include the stored response, body included")
		}
		return func(e *env, args []string) (result, error) {
			if kind == keysReconciling && len(args) == 1 {
				if f.key != "" {
					return result{}, usagef("the key is given twice: as --key and as the argument %q", args[0])
				}
				f.key, args = args[0], nil
			}
			if len(args) > 0 {
				return result{}, usagef("unexpected arguments: %s", strings.Join(args, " "))
			}
			if err := api.ValidateName("--scope", f.scope); err != nil {
				return result{}, usagef("%w", err)
			}
			if err := api.ValidateName("--key", f.key); err != nil {
				return result{}, usagef("%w", err)
			}
			base, err := baseURL(f.addr)
			if err != nil {
				return result{}, usagef("--addr: %w", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
			defer cancel()
			return act(ctx, &adminClient{base: base, token: f.token, http: &http.Client{}, verbose: verboseTo(f.verbose, e.stderr)}, f)
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// baseURL accepts host:port or an http(s) URL.
func baseURL(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is neither host:port nor an http(s) URL", addr)
	}
	return u, nil
}

type keyResult struct {
	OK     bool        `json:"ok"`
	Effect api.Effect  `json:"effect"` // always noop: reading changes nothing
	Record *api.Record `json:"record"`
}

type effectResult struct {
	OK     bool        `json:"ok"`
	Effect api.Effect  `json:"effect"`
	Record *api.Record `json:"record,omitempty"`
	// EdgeBound: within what edge caches stop replaying the record (not
	// on a dry run).
	EdgeBound string `json:"edge_caches_stop_within,omitempty"`
}

type listResult struct {
	OK      bool         `json:"ok"`
	Effect  api.Effect   `json:"effect"` // always noop
	Count   int          `json:"count"`
	Records []api.Record `json:"records"`
}

func keysGet(ctx context.Context, c *adminClient, f *keysFlags) (result, error) {
	q := c.query(f)
	if f.body {
		q.Set("body", "1")
	}
	var rec api.Record
	if err := c.do(ctx, http.MethodGet, api.PathAdminKeys, q, &rec); err != nil {
		return result{}, err
	}
	return result{text: describeRecord(&rec), json: keyResult{OK: true, Effect: api.EffectNoop, Record: &rec}}, nil
}

func keysDelete(ctx context.Context, c *adminClient, f *keysFlags) (result, error) {
	return c.mutate(ctx, http.MethodDelete, api.PathAdminKeys, f)
}

func keysRelease(ctx context.Context, c *adminClient, f *keysFlags) (result, error) {
	return c.mutate(ctx, http.MethodPost, api.PathAdminRelease, f)
}

type reconcileResult struct {
	OK     bool                 `json:"ok"`
	Effect api.Effect           `json:"effect"`
	Record *api.Record          `json:"record,omitempty"`
	Answer *api.ReconcileAnswer `json:"answer,omitempty"`
}

func keysReconcile(ctx context.Context, c *adminClient, f *keysFlags) (result, error) {
	var res api.AdminResult
	if err := c.do(ctx, http.MethodPost, api.PathAdminReconcile, c.query(f), &res); err != nil {
		var se *serviceError
		if errors.As(err, &se) && se.code == codeLeaseLive {
			se.msg = strings.Replace(se.msg, forceHint, "", 1) // reconcile has no --force
		}
		return result{}, err
	}
	return result{text: describeReconcile(&res, f.dryRun), json: reconcileResult{OK: true, Effect: res.Effect, Record: res.Record, Answer: res.Answer}}, nil
}

// describeReconcile says in one or two lines what a reconcile did and why.
func describeReconcile(res *api.AdminResult, dryRun bool) string {
	a := res.Answer
	var b strings.Builder
	b.WriteString(string(res.Effect))
	switch {
	case a == nil && res.Record == nil:
		b.WriteString(": no record for this scope and key")
	case a == nil:
		fmt.Fprintf(&b, ": the record is %s; nothing to ask", res.Record.State)
	default:
		fmt.Fprintf(&b, ": the upstream answered %s", a.Outcome)
		if a.Response != nil {
			fmt.Fprintf(&b, " (status %d)", a.Response.Status)
		}
		switch {
		case dryRun:
			b.WriteString("; dry run: nothing changed")
		case a.Outcome == api.ReconcileUnknown:
			b.WriteString("; the record stays indeterminate and is asked about again later")
		case res.Effect == api.EffectNoop:
			b.WriteString("; the record changed meanwhile and was left alone")
		case res.Effect == api.EffectCompleted:
			b.WriteString("; retries replay its response")
		case res.Effect == api.EffectReleased:
			b.WriteString("; the next request with this key executes")
		}
	}
	return b.String()
}

func describeRecord(r *api.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scope:        %s\nkey:          %s\nstate:        %s\nfingerprint:  %s\ncreated:      %s\nexpires:      %s",
		r.Scope, r.Key, r.State, r.Fingerprint, r.CreatedAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339))
	if r.LeaseExpiresAt != nil {
		fmt.Fprintf(&b, "\nlease until:  %s", r.LeaseExpiresAt.Format(time.RFC3339Nano))
	}
	if r.State == api.StateCompleted {
		fmt.Fprintf(&b, "\nstatus:       %d", r.Status)
	}
	if r.BodyOmitted {
		b.WriteString("\nbody:         not stored (over the size cap)")
	}
	if r.Response != nil && len(r.Response.Body) > 0 {
		fmt.Fprintf(&b, "\nbody:         %s", r.Response.Body)
	}
	return b.String()
}

// adminClient calls the admin API.
type adminClient struct {
	base    *url.URL
	token   string
	http    *http.Client
	verbose io.Writer // --verbose: where the Redis node goes; nil: nowhere
}

func verboseTo(on bool, w io.Writer) io.Writer {
	if on {
		return w
	}
	return nil
}

func (c *adminClient) query(f *keysFlags) url.Values {
	q := url.Values{}
	q.Set("scope", f.scope)
	q.Set("key", f.key)
	if f.dryRun {
		q.Set("dry_run", "1")
	}
	if f.force {
		q.Set("force", "1")
	}
	return q
}

func (c *adminClient) mutate(ctx context.Context, method, path string, f *keysFlags) (result, error) {
	var res api.AdminResult
	if err := c.do(ctx, method, path, c.query(f), &res); err != nil {
		return result{}, err
	}
	text := string(res.Effect)
	if res.Effect == api.EffectNoop {
		text += ": no record for this scope and key"
	}
	out := effectResult{OK: true, Effect: res.Effect, Record: res.Record}
	if !f.dryRun {
		out.EdgeBound = edgeBound
		text += "\nedge caches stop replaying it within " + edgeBound
	}
	return result{text: text, json: out}, nil
}

// defineKeysList defines keys list: --state, an optional --scope, paging.
func defineKeysList(fs *flag.FlagSet) action {
	var (
		addr, token, scope, state string
		timeout                   time.Duration
		page                      int
		verbose                   bool
	)
	fs.StringVar(&addr, "addr", envOr("IDEM_CONTROLPLANE_ADDR", "127.0.0.1:8081"),
		"control plane ADDRESS: host:port or a URL (env IDEM_CONTROLPLANE_ADDR)")
	fs.StringVar(&token, "token", envOr("IDEM_ADMIN_TOKEN", os.Getenv("IDEM_CONTROLPLANE_TOKEN")),
		"bearer TOKEN for the admin API (env IDEM_ADMIN_TOKEN, else IDEM_CONTROLPLANE_TOKEN)")
	fs.StringVar(&state, "state", "", "STATE to list: indeterminate or in_progress; required")
	fs.StringVar(&scope, "scope", "", "list only this SCOPE, as the filter sends it; default every scope")
	fs.IntVar(&page, "page", api.DefaultListLimit, fmt.Sprintf("keys the control plane examines per request, 1 to %d", api.MaxListLimit))
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up after DURATION")
	fs.BoolVar(&verbose, "verbose", false, verboseUsage)
	return func(e *env, args []string) (result, error) {
		if len(args) > 0 {
			return result{}, usagef("unexpected arguments: %s", strings.Join(args, " "))
		}
		if state != string(api.StateIndeterminate) && state != string(api.StateInProgress) {
			return result{}, usagef("--state %q: want indeterminate or in_progress", state)
		}
		if scope != "" {
			if err := api.ValidateName("--scope", scope); err != nil {
				return result{}, usagef("%w", err)
			}
		}
		if page < 1 || page > api.MaxListLimit {
			return result{}, usagef("--page %d: want 1 to %d", page, api.MaxListLimit)
		}
		base, err := baseURL(addr)
		if err != nil {
			return result{}, usagef("--addr: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c := &adminClient{base: base, token: token, http: &http.Client{}, verbose: verboseTo(verbose, e.stderr)}
		recs := []api.Record{}
		cursor := ""
		for {
			q := url.Values{}
			q.Set("state", state)
			q.Set("limit", strconv.Itoa(page))
			if scope != "" {
				q.Set("scope", scope)
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var kl api.KeyList
			if err := c.do(ctx, http.MethodGet, api.PathAdminKeyList, q, &kl); err != nil {
				return result{}, err
			}
			recs = append(recs, kl.Records...)
			if cursor = kl.Cursor; cursor == "" {
				break
			}
		}
		sort.Slice(recs, func(i, j int) bool {
			if recs[i].Scope != recs[j].Scope {
				return recs[i].Scope < recs[j].Scope
			}
			return recs[i].Key < recs[j].Key
		})
		var b strings.Builder
		fmt.Fprintf(&b, "%d %s record(s)", len(recs), state)
		for _, r := range recs {
			fmt.Fprintf(&b, "\n%q %q created %s expires %s", r.Scope, r.Key, r.CreatedAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339))
			if r.LeaseExpiresAt != nil {
				fmt.Fprintf(&b, " lease until %s", r.LeaseExpiresAt.Format(time.RFC3339))
			}
		}
		return result{text: b.String(), json: listResult{OK: true, Effect: api.EffectNoop, Count: len(recs), Records: recs}}, nil
	}
}

// do sends one request and decodes a 2xx answer into out; any other answer
// becomes a serviceError carrying the problem's detail.
func (c *adminClient) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := c.base.JoinPath(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return &serviceError{code: codeUnavailable, msg: err.Error()}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return &serviceError{code: codeUnavailable, msg: fmt.Sprintf("control plane at %s: %v", c.base.Host, err)}
	}
	defer resp.Body.Close()
	if c.verbose != nil {
		node := resp.Header.Get(headerRedisNode)
		if node == "" {
			node = "(not reported)"
		}
		fmt.Fprintf(c.verbose, "idemctl: %s %s: HTTP %d, redis node %s\n", method, path, resp.StatusCode, node)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInput))
	if err != nil {
		return &serviceError{code: codeUnavailable, msg: fmt.Sprintf("reading the answer: %v", err)}
	}
	if resp.StatusCode/100 != 2 {
		return problemError(resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &serviceError{code: codeInternal, msg: fmt.Sprintf("unexpected answer from the control plane: %v", err)}
	}
	return nil
}

// problemLeaseLive is the problem type of an admin delete or release
// refused because the record's lease still runs.
const problemLeaseLive = "urn:idemgate:problem:lease-live"

// forceHint ends the message of a lease_live refusal of delete and release.
const forceHint = " (idemctl: --force)"

func problemError(status int, body []byte) error {
	var p api.Problem
	msg := http.StatusText(status)
	if json.Unmarshal(body, &p) == nil && p.Title != "" {
		msg = p.Title
		if p.Detail != "" {
			msg += ": " + p.Detail
		}
	}
	code := codeUnavailable
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		code = codeUnauthorized
	case http.StatusNotFound:
		code = codeNotFound
	case http.StatusConflict:
		code = codeConflict
		if p.Type == problemLeaseLive {
			code = codeLeaseLive
			msg += forceHint
		}
	case http.StatusBadRequest:
		code = codeRejected
	}
	return &serviceError{code: code, status: status, msg: fmt.Sprintf("%s (HTTP %d)", msg, status)}
}

// serviceError is a failure of, or a refusal by, the control plane.
type serviceError struct {
	code   string
	status int
	msg    string
}

func (e *serviceError) Error() string { return e.msg }
