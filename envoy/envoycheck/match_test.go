package envoycheck

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/idemgate/idemgate/plugin/policy"
)

func TestGoverningRoute(t *testing.T) {
	cfg, err := policy.Parse([]byte(`{
	  "control_plane": {"cluster": "c", "authority": "a", "token": "0123456789abcdef"},
	  "routes": [
	    {"match": {"path": "/payments", "methods": ["POST"]}, "scope": {"headers": ["authorization"]}},
	    {"match": {"prefix": "/orders/", "methods": ["POST", "PATCH"]}, "scope": {"headers": ["authorization"]}},
	    {"match": {"glob": "/v1/*/refunds/**", "host": "*.example.com"}, "scope": {"headers": ["authorization"]}}
	  ]}`))
	if err != nil {
		t.Fatal(err)
	}
	prefix := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
	}
	path := func(p string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
	}
	method := func(m *routev3.RouteMatch, verb string) *routev3.RouteMatch {
		m.Headers = []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: verb}}}}}
		return m
	}
	tests := []struct {
		name  string
		match *routev3.RouteMatch
		want  int
	}{
		{"catch-all", prefix("/"), 0},
		{"exact governed path", path("/payments"), 0},
		{"exact other path", path("/payments/1"), -1},
		{"prefix shorter than the path", prefix("/pay"), 0},
		{"prefix past the path", prefix("/payments/x"), -1},
		{"prefix inside a policy prefix", prefix("/orders/7"), 1},
		{"policy prefix inside it", prefix("/ord"), 1},
		{"exact path under a policy prefix", path("/orders/7"), 1},
		{"GET only", method(prefix("/orders/"), "GET"), -1},
		{"PATCH only", method(prefix("/orders/"), "PATCH"), 1},
		{"glob literal", prefix("/v1/"), 2},
		{"glob by exact path", path("/v1/acct/refunds/9"), 2},
		{"glob, other path", path("/v1/acct/charges"), -1},
		{"regex: in doubt, governed", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/x.*"}}}, 0},
		{"case-insensitive: in doubt, governed", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/zzz"}, CaseSensitive: wrapperspb.Bool(false)}, 0},
		{"unrelated prefix", prefix("/static/"), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := governingRoute(tt.match, cfg); got != tt.want {
				t.Errorf("governingRoute = %d, want %d", got, tt.want)
			}
		})
	}
}
