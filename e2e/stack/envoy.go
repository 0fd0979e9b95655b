package stack

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"text/template"

	"github.com/idemgate/idemgate/e2e/host"
)

//go:embed envoy.yaml.tmpl
var envoyTemplate string

var envoyTmpl = template.Must(template.New("envoy.yaml").Funcs(template.FuncMap{
	// quote writes a string as a JSON string, which is also a YAML
	// double-quoted scalar: the policy and paths need no further escaping.
	"quote": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
	// json writes a value as JSON, which YAML reads as a flow mapping.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}).Parse(envoyTemplate))

// EnvoyParams are the addresses and files an Envoy bootstrap needs.
type EnvoyParams struct {
	GatewayAddr      string
	ControlPlaneAddr string
	UpstreamAddr     string
	ControlPlaneName string // the policy's control_plane.cluster
	Wasm             string // absolute path of the module
	Policy           string // the plugin configuration, verbatim
	// Routes are the route configuration's routes, by path prefix, each
	// to the upstream; none: one unnamed route for "/".
	Routes []host.Route
}

type hostPort struct {
	Host string
	Port int
}

func splitAddr(role, addr string) (hostPort, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return hostPort{}, fmt.Errorf("%s address %q: %w", role, addr, err)
	}
	if net.ParseIP(h) == nil {
		// Envoy's STATIC clusters and listeners take IP addresses only.
		return hostPort{}, fmt.Errorf("%s address %q: want an IP address, not a name", role, addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return hostPort{}, fmt.Errorf("%s address %q: bad port", role, addr)
	}
	return hostPort{Host: h, Port: port}, nil
}

// RenderEnvoy renders the bootstrap for real Envoy.
func RenderEnvoy(p EnvoyParams) ([]byte, error) {
	var d struct {
		Gateway, ControlPlane, Upstream hostPort
		ControlPlaneName, Wasm, Policy  string
		Routes                          []host.Route
	}
	var err error
	if d.Gateway, err = splitAddr(RoleGateway, p.GatewayAddr); err != nil {
		return nil, err
	}
	if d.ControlPlane, err = splitAddr(RoleControlPlane, p.ControlPlaneAddr); err != nil {
		return nil, err
	}
	if d.Upstream, err = splitAddr(RoleUpstream, p.UpstreamAddr); err != nil {
		return nil, err
	}
	d.ControlPlaneName, d.Wasm, d.Policy, d.Routes = p.ControlPlaneName, p.Wasm, p.Policy, p.Routes
	var buf bytes.Buffer
	if err := envoyTmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render envoy bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}
