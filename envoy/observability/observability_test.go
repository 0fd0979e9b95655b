package observability

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metricsql"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/server"
)

// wasmCustomNamespace is the stat namespace Envoy's Wasm extension puts
// every metric a module defines under (the admin /stats page shows
// wasmcustom.idemgate.executions).
const wasmCustomNamespace = "wasmcustom"

var (
	promUnsafe  = regexp.MustCompile(`[^a-zA-Z0-9_]`)
	promNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	envoyPrefix = "envoy_"
)

// envoyPromName is the name Envoy's /stats/prometheus gives a stat, as
// Envoy's PrometheusStatsRender::metricName does: a stat in a registered
// custom namespace (wasmcustom for Wasm modules) loses the namespace and
// gets no "envoy_" prefix; any other gets "envoy_". Either way every
// character outside [a-zA-Z0-9_] becomes '_'. A custom stat whose result
// is not a valid Prometheus name (a leading digit) or starts with "__" is
// not exported at all (ok false). Counters keep their name (no _total);
// histograms add _bucket, _sum and _count. Tag extraction, which Envoy
// applies first, is not modelled: TestFilterStatsHaveNoEnvoyTags checks
// that none of the default extractors that could match a wasmcustom stat
// does.
func envoyPromName(stat string, customNamespaces ...string) (string, bool) {
	for _, ns := range customNamespaces {
		if rest, ok := strings.CutPrefix(stat, ns+"."); ok {
			name := promUnsafe.ReplaceAllString(rest, "_")
			if !promNameRE.MatchString(name) || strings.HasPrefix(name, "__") {
				return "", false
			}
			return name, true
		}
	}
	return envoyPrefix + promUnsafe.ReplaceAllString(stat, "_"), true
}

// The cases of Envoy's own tests of the renderer
// (test/server/admin/prometheus_stats_test.cc), then ours.
func TestEnvoyPromName(t *testing.T) {
	tests := []struct {
		stat, ns, want string
		ok             bool
	}{
		{"vulture.eats-liver", "", "envoy_vulture_eats_liver", true},
		{"An.artist.plays-violin@019street", "", "envoy_An_artist_plays_violin_019street", true},
		{"3.artists.play-violin@019street", "", "envoy_3_artists_play_violin_019street", true},
		{"promstattest.vulture.eats-liver", "promstattest", "vulture_eats_liver", true},
		{"promstattest.1234abcd.eats-liver", "promstattest", "", false},
		{"wasmcustom.idemgate.requests_governed", wasmCustomNamespace, "idemgate_requests_governed", true},
		{"wasmcustom.__idemgate.x", wasmCustomNamespace, "", false},
		{"wasmcustomx.idemgate.x", wasmCustomNamespace, "envoy_wasmcustomx_idemgate_x", true},
	}
	for _, tt := range tests {
		var ns []string
		if tt.ns != "" {
			ns = []string{tt.ns}
		}
		got, ok := envoyPromName(tt.stat, ns...)
		if got != tt.want || ok != tt.ok {
			t.Errorf("envoyPromName(%q, %q) = %q, %v; want %q, %v", tt.stat, tt.ns, got, ok, tt.want, tt.ok)
		}
	}
}

// moduleStat is a metric the filter defines.
type moduleStat struct{ name, kind string }

// moduleStats reads the metrics the filter defines from its source: every
// proxywasm.Define{Counter,Gauge,Histogram}Metric call in plugin/. A name
// that is not a string literal is an error: it could not be checked.
func moduleStats(t *testing.T) []moduleStat {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir("../../plugin")
	if err != nil {
		t.Fatal(err)
	}
	var stats []moduleStat
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, "../../plugin/"+e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			m := regexp.MustCompile(`^Define(Counter|Gauge|Histogram)Metric$`).FindStringSubmatch(sel.Sel.Name)
			if !ok || pkg.Name != "proxywasm" || m == nil {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: %s with a name that is not a string literal; this test cannot know it", fset.Position(call.Pos()), sel.Sel.Name)
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			stats = append(stats, moduleStat{name, strings.ToLower(m[1])})
			return true
		})
	}
	// plugin/stats.go and plugin/memory.go defined 25 when this was written.
	if len(stats) < 20 {
		t.Fatalf("found %d metric definitions in plugin/; has the filter's stats code moved?", len(stats))
	}
	return stats
}

// series is a Prometheus series name and what is known of its labels:
// nil for the filter's (Envoy adds none; the scrape adds its own), else
// the label names and the values each takes at /metrics.
type series map[string]map[string][]string

// filterSeries are the filter's stats as Prometheus sees them.
func filterSeries(t *testing.T) series {
	t.Helper()
	out := series{}
	for _, s := range moduleStats(t) {
		name, ok := envoyPromName(wasmCustomNamespace+"."+s.name, wasmCustomNamespace)
		if !ok {
			t.Errorf("stat %s: Envoy would not export it to Prometheus", s.name)
			continue
		}
		switch s.kind {
		case "histogram":
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[name+suffix] = nil
			}
		default:
			out[name] = nil
		}
	}
	return out
}

// The tag extractors, Envoy's defaults and those Istio's bootstrap adds,
// that are not anchored to a prefix a wasmcustom stat cannot have
// (cluster., http., listener., ...): a match would move part of the name
// into a label.
var envoyUnanchoredTags = []*regexp.Regexp{
	regexp.MustCompile(`_rq(_(\d{3}))$`),         // envoy.response_code
	regexp.MustCompile(`_rq(_(\dxx))$`),          // envoy.response_code_class
	regexp.MustCompile(`(cache\.(.+?)\.)`),       // Istio: cache
	regexp.MustCompile(`(component\.(.+?)\.)`),   // Istio: component
	regexp.MustCompile(`(tag\.(.+?);\.)`),        // Istio: tag
	regexp.MustCompile(`(wasm_filter\.(.+?)\.)`), // Istio: wasm_filter
}

func TestFilterStatsHaveNoEnvoyTags(t *testing.T) {
	for _, s := range moduleStats(t) {
		for _, re := range envoyUnanchoredTags {
			if re.MatchString(wasmCustomNamespace + "." + s.name) {
				t.Errorf("stat %s matches Envoy's tag extractor %s: its Prometheus name would differ", s.name, re)
			}
		}
	}
}

// controlPlaneSeries reads the control plane's /metrics, served by the
// real server on the registry the binary builds (controlplane/main.go:
// NewRegistry, NewRedisMetrics, reconcile.NewMetrics, then server.New). Most series exist at
// zero from the start (controlplane/server/metrics.go), so the values of
// their labels are known; a series that appears only on first use
// (idemgate_http_requests_total) is known by the second scrape, which the
// first one creates, and only by its label names.
func controlPlaneSeries(t *testing.T) series {
	t.Helper()
	reg := server.NewRegistry()
	server.NewRedisMetrics(reg)
	reconcile.NewMetrics(reg, []string{"default"})
	srv, err := server.New(nil, server.Options{InsecureNoAuth: true, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	first, second := scrape(t, srv), scrape(t, srv)
	for name, labels := range second {
		if _, ok := first[name]; !ok {
			for l := range labels {
				labels[l] = nil // any value
			}
			first[name] = labels
		}
	}
	if _, ok := first["idemgate_operations_total"]; !ok {
		t.Fatalf("/metrics has no idemgate_operations_total; got %d series names", len(first))
	}
	return first
}

func scrape(t *testing.T, srv http.Handler) series {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	out := series{}
	add := func(name string, m *dto.Metric, extra ...string) {
		labels := out[name]
		if labels == nil {
			labels = map[string][]string{}
			out[name] = labels
		}
		for _, lp := range m.GetLabel() {
			if !slices.Contains(labels[lp.GetName()], lp.GetValue()) {
				labels[lp.GetName()] = append(labels[lp.GetName()], lp.GetValue())
			}
		}
		for _, l := range extra {
			labels[l] = nil // any value
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

// prometheusOwn are series Prometheus makes itself for every scrape target.
var prometheusOwn = series{"up": nil}

// selector is one metric selector of a query: a name and its matchers.
type selector struct {
	name     string
	matchers []metricsql.LabelFilter
}

// grafanaVars stand in for the Grafana variables queries may use, so that
// the query parses as PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// selectors parses a PromQL query (MetricsQL's parser: a superset of
// PromQL, small to build) and returns its metric selectors. A selector
// without a literal metric name is an error: its series could not be
// checked.
func selectors(query string) ([]selector, error) {
	e, err := metricsql.Parse(grafanaVars.Replace(query))
	if err != nil {
		return nil, err
	}
	var out []selector
	var errs []error
	metricsql.VisitAll(e, func(e metricsql.Expr) {
		me, ok := e.(*metricsql.MetricExpr)
		if !ok {
			return
		}
		for _, lfs := range me.LabelFilterss {
			var s selector
			for _, lf := range lfs {
				if lf.Label == "__name__" && !lf.IsRegexp && !lf.IsNegative {
					s.name = lf.Value
				} else {
					s.matchers = append(s.matchers, lf)
				}
			}
			if s.name == "" {
				errs = append(errs, fmt.Errorf("selector %s names no metric", me.AppendString(nil)))
				continue
			}
			out = append(out, s)
		}
	})
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	tests := []struct {
		query string
		want  []string // name{label=value,...}
		err   bool
	}{
		{`up`, []string{"up"}, false},
		{`sum by (le) (rate(a_bucket{op="x"}[$__rate_interval]))`, []string{"a_bucket{op=x}"}, false},
		{`sum(rate(a[5m])) / (sum(rate(b[5m])) + sum(rate(c{d=~"e|f"}[5m])))`, []string{"a", "b", "c{d=~e|f}"}, false},
		{`histogram_quantile(0.99, sum by (le, op) (rate(x_bucket[1m]))) > 2 or absent(y{j="k"})`, []string{"x_bucket", "y{j=k}"}, false},
		{`{__name__=~"idemgate_.*"}`, nil, true},
		{`sum(rate(a[5m])`, nil, true},
	}
	for _, tt := range tests {
		sels, err := selectors(tt.query)
		if (err != nil) != tt.err {
			t.Errorf("selectors(%q): error %v, want error %v", tt.query, err, tt.err)
			continue
		}
		var got []string
		for _, s := range sels {
			str := s.name
			if len(s.matchers) > 0 {
				var ms []string
				for _, m := range s.matchers {
					op := "="
					if m.IsRegexp {
						op = "=~"
					}
					ms = append(ms, m.Label+op+m.Value)
				}
				str += "{" + strings.Join(ms, ",") + "}"
			}
			got = append(got, str)
		}
		sort.Strings(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("selectors(%q) = %v, want %v", tt.query, got, tt.want)
		}
	}
}

// literalAlternatives returns the values a regexp matcher such as
// "reserve|complete" accepts, or nil when it is not such a plain list.
func literalAlternatives(re string) []string {
	alts := strings.Split(re, "|")
	for _, a := range alts {
		if a == "" || regexp.QuoteMeta(a) != a {
			return nil
		}
	}
	return alts
}

// checkQuery returns what is wrong with a query's selectors: a series no
// one exports, or (for the control plane's) a label it does not have or a
// value it never takes.
func checkQuery(query string, known ...series) []error {
	sels, err := selectors(query)
	if err != nil {
		return []error{fmt.Errorf("%q: %w", query, err)}
	}
	var errs []error
	for _, s := range sels {
		var labels map[string][]string
		found := false
		for _, k := range known {
			if l, ok := k[s.name]; ok {
				labels, found = l, true
				break
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("%q: no metric %s is exported", query, s.name))
			continue
		}
		if labels == nil {
			continue // the filter's, or Prometheus's own: no labels to know
		}
		for _, m := range s.matchers {
			values, ok := labels[m.Label]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%q: %s has no label %s", query, s.name, m.Label))
			case values == nil || m.IsNegative:
			case !m.IsRegexp && !slices.Contains(values, m.Value):
				errs = append(errs, fmt.Errorf("%q: %s{%s} never takes the value %q (it takes %v)", query, s.name, m.Label, m.Value, values))
			case m.IsRegexp:
				for _, v := range literalAlternatives(m.Value) {
					if !slices.Contains(values, v) {
						errs = append(errs, fmt.Errorf("%q: %s{%s} never takes the value %q (it takes %v)", query, s.name, m.Label, v, values))
					}
				}
			}
		}
	}
	return errs
}

func TestCheckQueryFails(t *testing.T) {
	cp, filter := controlPlaneSeries(t), filterSeries(t)
	for _, q := range []string{
		`sum(rate(idemgate_operations_total{op="reserv"}[5m]))`,         // a value it never takes
		`sum(rate(idemgate_operations_total{opp="reserve"}[5m]))`,       // a label it has not
		`sum(rate(idemgate_operations_total{op=~"reserve|admin"}[5m]))`, // one alternative wrong
		`sum(rate(idemgate_operation_total[5m]))`,                       // misspelt
		`sum(rate(wasmcustom_idemgate_executions[5m]))`,                 // Envoy strips the namespace
		`sum(rate(envoy_idemgate_executions[5m]))`,                      // and adds no envoy_ prefix
		`sum(rate(idemgate_executions_total[5m]))`,                      // Envoy adds no _total
		`histogram_quantile(0.9, rate(idemgate_controlplane_latency_ms[5m]))`,
		`sum(rate(idemgate_executions[5m])`, // does not parse
	} {
		if len(checkQuery(q, cp, filter, prometheusOwn)) == 0 {
			t.Errorf("accepted %s", q)
		}
	}
	for _, q := range []string{
		`sum(rate(idemgate_operations_total{op=~"reserve|abandon", outcome="indeterminate"}[5m]))`,
		`histogram_quantile(0.9, sum by (le) (rate(idemgate_controlplane_latency_ms_bucket[5m])))`,
		`sum(idemgate_outcomes_pending)`,
		`up{job="anything"}`,
	} {
		if errs := checkQuery(q, cp, filter, prometheusOwn); len(errs) > 0 {
			t.Errorf("rejected %s: %v", q, errs)
		}
	}
}

// dashboardQueries returns the expr of every target of every panel,
// panels inside rows included.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Title  string            `json:"title"`
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("grafana-dashboard.json: want a uid and a title (Grafana keys imports by uid)")
	}
	var queries []string
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("grafana-dashboard.json panel: %v", err)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries = append(queries, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	return queries
}

// ruleFile is a Prometheus rule file (Prometheus's rulefmt), decoded
// strictly: a misspelt key such as "expression" fails.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

func alertRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	strict, err := kjson.UnmarshalStrict(js, &rf)
	if err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, e := range strict {
		t.Errorf("alerts.yaml: %v", e)
	}
	return rf
}

func TestDashboardMetricsExist(t *testing.T) {
	cp, filter := controlPlaneSeries(t), filterSeries(t)
	queries := dashboardQueries(t)
	if len(queries) < 10 {
		t.Fatalf("found %d queries in the dashboard; is the walk finding the panels?", len(queries))
	}
	used := map[string]bool{}
	for _, q := range queries {
		for _, err := range checkQuery(q, cp, filter) {
			t.Error(err)
		}
		sels, _ := selectors(q)
		for _, s := range sels {
			used[s.name] = true
		}
	}
	// What issue 13 asks the dashboard to show.
	for _, name := range []string{
		"idemgate_replays_edge", "idemgate_replays_controlplane", "idemgate_executions",
		"idemgate_conflicts", "idemgate_mismatches", "idemgate_indeterminate", "idemgate_shed_memory",
		"idemgate_controlplane_latency_ms_bucket", "idemgate_outcomes_pending",
		"idemgate_http_requests_total", "idemgate_operations_total",
	} {
		if !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}

func TestAlertMetricsExist(t *testing.T) {
	cp, filter := controlPlaneSeries(t), filterSeries(t)
	rf := alertRules(t)
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if (r.Alert == "") == (r.Record == "") || r.Expr == "" {
				t.Errorf("group %s: a rule needs alert or record, and expr: %+v", g.Name, r)
			}
			if r.Alert != "" && r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary", r.Alert)
			}
			alerts[r.Alert] = true
			for _, err := range checkQuery(r.Expr, cp, filter, prometheusOwn) {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
		}
	}
	// What issue 13 asks the rules to catch.
	for _, a := range []string{"IdemgateControlPlaneDown", "IdemgateControlPlaneUnreachable", "IdemgateIndeterminateKeysRising", "IdemgateFailOpenPasses"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
}
