package reconcile

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/idemgate/idemgate/controlplane/api"
)

// DefaultTarget is the name of a target given without one (a bare
// --reconcile-url TEMPLATE), and of the target a reserve names with an
// empty reconcile_target.
const DefaultTarget = api.DefaultReconcileTarget

// Credential environment variables: the default target's is
// CredentialEnvPrefix alone, target NAME's is CredentialEnvPrefix + "_" +
// NAME in upper case with '-' as '_'.
const CredentialEnvPrefix = "IDEMGATE_RECONCILE_TOKEN"

// Placeholders of a lookup URL template.
var placeholders = []string{"{key}", "{attempt}", "{scope}"}

// Target is one upstream's lookup URL template and the service credential
// the control plane presents to it.
type Target struct {
	Name     string
	Template string
	// Credential, when set, is sent as "Authorization: Bearer <Credential>":
	// the control plane's own credential for the upstream, never a client's.
	Credential string
}

// ParseTargetFlag splits a --reconcile-url value, "[NAME=]TEMPLATE", into
// a name and a template; it validates neither (ValidateTarget does).
// The name is what comes before the first '=' when that precedes "://":
// a bare template keeps the '=' of its query string.
func ParseTargetFlag(s string) (name, template string) {
	eq := strings.IndexByte(s, '=')
	scheme := strings.Index(s, "://")
	if eq < 0 || scheme >= 0 && scheme < eq {
		return DefaultTarget, s
	}
	return s[:eq], s[eq+1:]
}

// ValidateTargetName checks a target's name: 1 to 64 bytes of
// [A-Za-z0-9_-], the alphabet of an environment variable's suffix and of a
// metric label.
func ValidateTargetName(name string) error {
	if name == "" {
		return errors.New("the target name is empty")
	}
	if len(name) > api.MaxReconcileTargetLen {
		return fmt.Errorf("the target name is %d bytes long; want at most %d", len(name), api.MaxReconcileTargetLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("the target name %q has a byte outside [A-Za-z0-9_-] at byte %d", name, i)
		}
	}
	return nil
}

// ValidateTemplate checks a lookup URL template: an absolute http or https
// URL with a host, no user information (the credential comes from the
// environment), no fragment, placeholders only among {key}, {attempt} and
// {scope}, at least one of {key} or {attempt}, and none in the scheme or
// host.
func ValidateTemplate(tpl string) error {
	if tpl == "" {
		return errors.New("the URL template is empty")
	}
	// Every brace must belong to a known placeholder: a typo such as {Key}
	// would otherwise be sent as is and every lookup would fail.
	rest := tpl
	for _, p := range placeholders {
		rest = strings.ReplaceAll(rest, p, "")
	}
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		return errors.New("the URL template has a brace that is not one of the placeholders {key}, {attempt}, {scope}")
	}
	if !strings.Contains(tpl, "{key}") && !strings.Contains(tpl, "{attempt}") {
		return errors.New("the URL template names neither {key} nor {attempt}: the upstream could not tell which request is asked about")
	}
	const marker = "placeholder"
	u, err := url.Parse(expandWith(tpl, func(string) string { return marker }))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a password
		}
		return fmt.Errorf("the URL template is not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("the URL template is not an absolute http or https URL")
	case u.Host == "":
		return errors.New("the URL template has no host")
	case strings.Contains(u.Host, marker) || strings.Contains(strings.SplitN(tpl, "://", 2)[0], "{"):
		return fmt.Errorf("the URL template has a placeholder in its scheme or host; placeholders go in the path or the query")
	case u.User != nil:
		return fmt.Errorf("%w; put the credential in %s instead", errUserInfo, CredentialEnvPrefix)
	case strings.Contains(tpl, "#"):
		return errors.New("the URL template has a fragment, which is never sent")
	}
	return nil
}

// errUserInfo: a template with a user (and likely a password): errors
// about it do not echo the template.
var errUserInfo = errors.New("the URL template carries user information")

// CredentialEnv names the environment variable holding target name's
// credential.
func CredentialEnv(name string) string {
	if name == DefaultTarget {
		return CredentialEnvPrefix
	}
	return CredentialEnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// URL expands t's template for one record: {key}, {attempt} and {scope}
// are replaced by their values, escaped for where they stand (in the path
// with url.PathEscape, in the query with url.QueryEscape, so that a key
// holding '&' or '=' cannot add a query parameter). A value made only of
// dots is escaped too: "." or ".." as a path segment would name another
// resource once a server or proxy resolves dot segments.
func (t Target) URL(key, attempt, scope string) string {
	vals := map[string]string{"{key}": key, "{attempt}": attempt, "{scope}": scope}
	q := strings.IndexByte(t.Template, '?')
	if q < 0 {
		return expandWith(t.Template, func(p string) string { return pathEscape(vals[p]) })
	}
	return expandWith(t.Template[:q], func(p string) string { return pathEscape(vals[p]) }) +
		expandWith(t.Template[q:], func(p string) string { return url.QueryEscape(vals[p]) })
}

func pathEscape(v string) string {
	if v != "" && strings.Trim(v, ".") == "" {
		return strings.Repeat("%2E", len(v))
	}
	return url.PathEscape(v)
}

// expandWith replaces every placeholder of tpl by f(placeholder).
func expandWith(tpl string, f func(placeholder string) string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tpl, '{')
		if i < 0 {
			b.WriteString(tpl)
			return b.String()
		}
		b.WriteString(tpl[:i])
		tpl = tpl[i:]
		matched := false
		for _, p := range placeholders {
			if strings.HasPrefix(tpl, p) {
				b.WriteString(f(p))
				tpl = tpl[len(p):]
				matched = true
				break
			}
		}
		if !matched {
			b.WriteByte('{')
			tpl = tpl[1:]
		}
	}
}

// ResolveTargets turns --reconcile-url values into targets, each with its
// credential read through getenv. It refuses an invalid name or template
// and a name given twice.
func ResolveTargets(flags []string, getenv func(string) string) ([]Target, error) {
	var out []Target
	seen := map[string]bool{}
	for _, f := range flags {
		name, tpl := ParseTargetFlag(f)
		if err := ValidateTargetName(name); err != nil {
			return nil, fmt.Errorf("--reconcile-url %q: %w", f, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("--reconcile-url: the target %q is given twice", name)
		}
		seen[name] = true
		if err := ValidateTemplate(tpl); errors.Is(err, errUserInfo) {
			return nil, fmt.Errorf("--reconcile-url of the target %q: %w", name, err)
		} else if err != nil {
			return nil, fmt.Errorf("--reconcile-url %q: %w", f, err)
		}
		out = append(out, Target{Name: name, Template: tpl, Credential: getenv(CredentialEnv(name))})
	}
	return out, nil
}
