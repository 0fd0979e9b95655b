package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	istiov1alpha1 "istio.io/api/extensions/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/envoy/envoycheck"
	"github.com/idemgate/idemgate/plugin/policy"
)

// TestEveryYAML covers every YAML file under envoy/ (testdata aside), so
// that a file added later is validated without a new test: Kubernetes,
// Istio, Gateway API and Envoy Gateway manifests by strict decoding into
// their API types, anything else as an Envoy bootstrap by envoycheck,
// which must find nothing.
func TestEveryYAML(t *testing.T) {
	var bootstraps, manifests int
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// observability/ holds Prometheus rules, which its own tests check.
		if d.IsDir() && (d.Name() == "testdata" || path == "observability") {
			return filepath.SkipDir
		}
		if d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		t.Run(path, func(t *testing.T) {
			if docs := splitDocs(data); isManifest(docs[0]) {
				manifests++
				for i, doc := range docs {
					if _, err := decodeManifest(doc); err != nil {
						t.Errorf("document %d: %v", i, err)
					}
				}
				return
			}
			bootstraps++
			for _, f := range envoycheck.Check(data) {
				t.Errorf("%s", f) // warnings too: our own examples are clean
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// envoy.yaml, two-routes.yaml; istio/* (5), envoy-gateway/* (3) and k8s/* (3).
	if bootstraps < 2 || manifests < 11 {
		t.Errorf("validated %d bootstraps and %d manifest files; want at least 2 and 11: is the walk still finding them?", bootstraps, manifests)
	}
}

// splitDocs splits a multi-document YAML stream at its "---" lines,
// dropping documents that hold only comments.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		js, err := yaml.YAMLToJSON([]byte(d))
		if err == nil && string(js) == "null" {
			continue
		}
		docs = append(docs, []byte(d))
	}
	if len(docs) == 0 {
		docs = [][]byte{data}
	}
	return docs
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func isManifest(doc []byte) bool {
	var tm typeMeta
	return yaml.Unmarshal(doc, &tm) == nil && tm.APIVersion != "" && tm.Kind != ""
}

// decodeManifest decodes one manifest strictly (unknown or misspelt
// fields fail) into the API type its apiVersion and kind name.
func decodeManifest(doc []byte) (any, error) {
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		obj = new(corev1.Namespace)
	case "v1 Secret":
		obj = new(corev1.Secret)
	case "v1 ConfigMap":
		obj = new(corev1.ConfigMap)
	case "v1 Service":
		obj = new(corev1.Service)
	case "apps/v1 Deployment":
		obj = new(appsv1.Deployment)
	case "apps/v1 StatefulSet":
		obj = new(appsv1.StatefulSet)
	case "extensions.istio.io/v1alpha1 WasmPlugin":
		return decodeIstio(doc, tm.Kind, new(istiov1alpha1.WasmPlugin))
	case "extensions.istio.io/v1alpha1 TrafficExtension":
		return decodeIstio(doc, tm.Kind, new(istiov1alpha1.TrafficExtension))
	case "gateway.networking.k8s.io/v1 GatewayClass":
		obj = new(gwapiv1.GatewayClass)
	case "gateway.networking.k8s.io/v1 Gateway":
		obj = new(gwapiv1.Gateway)
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		obj = new(gwapiv1.HTTPRoute)
	case "gateway.envoyproxy.io/v1alpha1 EnvoyProxy":
		obj = new(egv1a1.EnvoyProxy)
	case "gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy":
		obj = new(egv1a1.EnvoyExtensionPolicy)
	case "gateway.envoyproxy.io/v1alpha1 ClientTrafficPolicy":
		obj = new(egv1a1.ClientTrafficPolicy)
	case "gateway.envoyproxy.io/v1alpha1 BackendTrafficPolicy":
		obj = new(egv1a1.BackendTrafficPolicy)
	default:
		return nil, fmt.Errorf("%s %s: no API type registered in this test; add one", tm.APIVersion, tm.Kind)
	}
	if err := strictDecode(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// strictDecode decodes YAML as the API server does: field names are
// case-sensitive (encoding/json's are not: "targetport" would pass) and
// unknown or duplicate fields fail.
func strictDecode(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return errors.Join(strict...)
	}
	return nil
}

// istioResource is an Istio resource: Kubernetes metadata around Istio's
// protobuf spec, which is decoded with protojson (unknown fields and enum
// values fail), as Istio's own validation decodes it.
type istioResource[T proto.Message] struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	Spec T
}

func decodeIstio[T proto.Message](doc []byte, kind string, spec T) (*istioResource[T], error) {
	var raw struct {
		typeMeta
		Metadata json.RawMessage `json:"metadata"`
		Spec     json.RawMessage `json:"spec"`
	}
	if err := strictDecode(doc, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	r := &istioResource[T]{Spec: spec}
	if err := strictDecode(raw.Metadata, &r.Metadata); err != nil {
		return nil, fmt.Errorf("%s metadata: %w", kind, err)
	}
	if err := protojson.Unmarshal(raw.Spec, r.Spec); err != nil {
		return nil, fmt.Errorf("%s spec: %w", kind, err)
	}
	return r, nil
}

func readYAML(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func decodeBootstrap(t *testing.T, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	bs := new(bootstrapv3.Bootstrap)
	if err := protojson.Unmarshal(js, bs); err != nil {
		t.Fatal(err)
	}
	return bs
}

// wasmPolicy returns the HCM and the policy JSON of the first listener's
// idemgate filter.
func wasmPolicy(t *testing.T, bs *bootstrapv3.Bootstrap) (*hcmv3.HttpConnectionManager, *wasmfilterv3.Wasm, string) {
	t.Helper()
	hcm := new(hcmv3.HttpConnectionManager)
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	w := new(wasmfilterv3.Wasm)
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(w); err != nil {
		t.Fatal(err)
	}
	sv := new(wrapperspb.StringValue)
	if err := w.GetConfig().GetConfiguration().UnmarshalTo(sv); err != nil {
		t.Fatalf("configuration: %v (want a StringValue)", err)
	}
	return hcm, w, sv.GetValue()
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestEnvoyYAMLHoldsTheDemoPolicy(t *testing.T) {
	bs := decodeBootstrap(t, readYAML(t, "envoy.yaml"))
	_, _, got := wasmPolicy(t, bs)
	want := readYAML(t, "../plugin/policy/testdata/demo.json")
	if !sameJSON(t, []byte(got), want) {
		t.Errorf("envoy.yaml's configuration differs from plugin/policy/testdata/demo.json:\n%s", got)
	}
}

func TestEnvoyYAMLMatchesTheLocalStack(t *testing.T) {
	bs := decodeBootstrap(t, readYAML(t, "envoy.yaml"))
	sockets := map[string]string{}
	l := bs.GetStaticResources().GetListeners()[0]
	sa := l.GetAddress().GetSocketAddress()
	sockets["listener"] = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	for _, c := range bs.GetStaticResources().GetClusters() {
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		sockets[c.GetName()] = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	}
	sa = bs.GetAdmin().GetAddress().GetSocketAddress()
	sockets["admin"] = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	want := map[string]string{
		"listener":              "127.0.0.1:8080",
		"upstream":              "127.0.0.1:9000",
		"idemgate_controlplane": "127.0.0.1:8081",
		"admin":                 "127.0.0.1:9901",
	}
	if !reflect.DeepEqual(sockets, want) {
		t.Errorf("addresses = %v, want %v (DESIGN.md, the local stack)", sockets, want)
	}
	_, w, _ := wasmPolicy(t, bs)
	vm := w.GetConfig().GetVmConfig()
	if vm.GetRuntime() != "envoy.wasm.runtime.v8" || vm.GetCode().GetLocal().GetFilename() != "build/idempotency.wasm" {
		t.Errorf("vm_config = %v; want runtime v8 and build/idempotency.wasm", vm)
	}
	js, err := protojson.Marshal(bs)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte("retryPolicy")) {
		t.Error("envoy.yaml has a retry_policy; it must have none")
	}
}

func TestTwoRoutesPolicies(t *testing.T) {
	data := readYAML(t, "two-routes.yaml")
	_, _, text := wasmPolicy(t, decodeBootstrap(t, data))
	cfg, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	pay := cfg.Match("gw", "/payments", "POST")
	if pay == nil || !pay.Required || pay.OnDuplicate != policy.Replay || pay.FailureMode != policy.FailClosed {
		t.Errorf("POST /payments: route %+v; want required, replay, fail closed", pay)
	}
	ord := cfg.Match("gw", "/orders/42", "POST")
	if ord == nil || ord.Required || ord.OnDuplicate != policy.Reject || ord.OnInProgress != policy.Wait || ord.FailureMode != policy.FailOpen {
		t.Errorf("POST /orders/42: route %+v; want optional key, reject, wait, fail open", ord)
	}
	for _, target := range []string{"/health", "/orders/42"} {
		if r := cfg.Match("gw", target, "GET"); r != nil {
			t.Errorf("GET %s is governed by %+v; want ungoverned", target, r.Match)
		}
	}

	// The retries on GET /orders and /health are accepted only because
	// the checker sees those routes are not governed: changing that must
	// make them errors.
	mutations := []struct {
		name, old, new, want string
	}{
		{"GET-only matcher dropped", "                  headers:\n                  - name: \":method\"\n                    string_match: { exact: \"GET\" }\n", "", "routes[1].route.retry_policy"},
		{"GET matcher turned to POST", `string_match: { exact: "GET" }`, `string_match: { exact: "POST" }`, "routes[1].route.retry_policy"},
		{"retry on the governed catch-all", "                  timeout: 15s\n", "                  timeout: 15s\n                  retry_policy: { retry_on: \"5xx\" }\n", "routes[2].route.retry_policy"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			if !bytes.Contains(data, []byte(m.old)) {
				t.Fatalf("two-routes.yaml no longer contains %q; update this test", m.old)
			}
			got := envoycheck.Check(bytes.Replace(data, []byte(m.old), []byte(m.new), 1))
			if !slices.ContainsFunc(got, func(f envoycheck.Finding) bool {
				return f.Severity == envoycheck.Error && strings.HasSuffix(f.Path, m.want)
			}) {
				t.Errorf("no error at ...%s; got %v", m.want, got)
			}
		})
	}
}

// controlPlane reads envoy/k8s/controlplane.yaml.
func controlPlane(t *testing.T) (*corev1.Secret, *appsv1.Deployment, *corev1.Service) {
	t.Helper()
	var (
		sec *corev1.Secret
		dep *appsv1.Deployment
		svc *corev1.Service
	)
	for _, doc := range splitDocs(readYAML(t, "k8s/controlplane.yaml")) {
		obj, err := decodeManifest(doc)
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *corev1.Secret:
			sec = o
		case *appsv1.Deployment:
			dep = o
		case *corev1.Service:
			svc = o
		}
	}
	if sec == nil || dep == nil || svc == nil {
		t.Fatal("k8s/controlplane.yaml: want a Secret, a Deployment and a Service")
	}
	return sec, dep, svc
}

// controlPlaneEnv lists the IDEM_ variables controlplane/config.go reads.
func controlPlaneEnv(t *testing.T) []string {
	src := readYAML(t, "../controlplane/config.go")
	var names []string
	for _, m := range regexp.MustCompile(`"(IDEM_[A-Z_]+)"`).FindAllSubmatch(src, -1) {
		names = append(names, string(m[1]))
	}
	if len(names) < 10 {
		t.Fatalf("found only %v in controlplane/config.go; has it moved?", names)
	}
	return names
}

func TestControlPlaneManifest(t *testing.T) {
	sec, dep, svc := controlPlane(t)
	known := controlPlaneEnv(t)
	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if !slices.Contains(known, e.Name) {
			t.Errorf("env %s: the control plane does not read it (controlplane/config.go)", e.Name)
		}
		env[e.Name] = e
	}
	tok := env["IDEM_CONTROLPLANE_TOKEN"].ValueFrom
	if tok == nil || tok.SecretKeyRef == nil || tok.SecretKeyRef.Name != sec.Name {
		t.Errorf("IDEM_CONTROLPLANE_TOKEN must come from the Secret %s, got %+v", sec.Name, env["IDEM_CONTROLPLANE_TOKEN"])
	} else if v := sec.StringData[tok.SecretKeyRef.Key]; len(v) < 16 {
		t.Errorf("the Secret's token %q is shorter than the 16 characters the control plane requires", v)
	}
	_, port, err := net.SplitHostPort(env["IDEM_CONTROLPLANE_ADDR"].Value)
	if err != nil {
		t.Fatalf("IDEM_CONTROLPLANE_ADDR: %v", err)
	}
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("container ports %v; want the one IDEM_CONTROLPLANE_ADDR listens on (%s)", c.Ports, port)
	}
	if p := svc.Spec.Ports; len(p) != 1 || p[0].TargetPort.String() != c.Ports[0].Name {
		t.Errorf("Service ports %v; want one targeting the container port %q", p, c.Ports[0].Name)
	}
	if got := c.LivenessProbe.HTTPGet.Path; got != api.PathHealthz {
		t.Errorf("liveness probe path %q, want %q (it must not depend on Redis)", got, api.PathHealthz)
	}
	if got := c.ReadinessProbe.HTTPGet.Path; got != api.PathReadyz {
		t.Errorf("readiness probe path %q, want %q", got, api.PathReadyz)
	}
	if !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, svc.Spec.Selector) {
		t.Errorf("Service selector %v does not select the Deployment's pods %v", svc.Spec.Selector, dep.Spec.Selector.MatchLabels)
	}
	// IDEM_REDIS_URL names the Redis Service.
	redisSvc := redisService(t)
	want := fmt.Sprintf("redis://%s.%s.svc.cluster.local:%d", redisSvc.Name, redisSvc.Namespace, redisSvc.Spec.Ports[0].Port)
	if got := env["IDEM_REDIS_URL"].Value; got != want {
		t.Errorf("IDEM_REDIS_URL = %q, want %q", got, want)
	}
}

func redisService(t *testing.T) *corev1.Service {
	for _, doc := range splitDocs(readYAML(t, "k8s/redis.yaml")) {
		obj, err := decodeManifest(doc)
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := obj.(*corev1.Service); ok {
			return s
		}
	}
	t.Fatal("k8s/redis.yaml has no Service")
	return nil
}

func TestRedisManifest(t *testing.T) {
	var conf string
	for _, doc := range splitDocs(readYAML(t, "k8s/redis.yaml")) {
		obj, err := decodeManifest(doc)
		if err != nil {
			t.Fatal(err)
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			conf = cm.Data["redis.conf"]
		}
	}
	// Eviction would forget keys (a retry then executes again); without
	// persistence a restart forgets them all.
	for _, line := range []string{"maxmemory-policy noeviction", "appendonly yes"} {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(line) + `\s*$`).MatchString(conf) {
			t.Errorf("redis.conf lacks %q", line)
		}
	}
}

// TestManifestDecodingIsStrict: a misspelt field must fail, or the
// validation above proves nothing.
func TestManifestDecodingIsStrict(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"Deployment", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"},
		{"Service", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80, targetport: 8080}]\n"},
		{"WasmPlugin spec", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\nspec:\n  phase: STAT\n"},
		{"WasmPlugin field", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\nspec:\n  plugin_confg: {}\n"},
		{"TrafficExtension field", "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: x}\nspec:\n  wasm: {url: oci://x/y, failStrategy: FAIL_CLOSE, vm_confg: {}}\n"},
		{"TrafficExtension enum", "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: x}\nspec:\n  wasm: {url: oci://x/y, failStrategy: FAIL_CLOSED}\n"},
		{"TrafficExtension env source", "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: x}\nspec:\n  wasm: {url: oci://x/y, vmConfig: {env: [{name: A, valueFrom: SECRET}]}}\n"},
		{"Gateway", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: x}\nspec:\n  gatewayClass: istio-waypoint\n"},
		{"EnvoyExtensionPolicy", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata: {name: x}\nspec:\n  wasm: [{code: {type: Image, image: {url: x, sha265: y}}}]\n"},
		{"EnvoyProxy", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyProxy\nmetadata: {name: x}\nspec:\n  bootstrap: {type: Merge, vaule: x}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeManifest([]byte(tt.doc)); err == nil {
				t.Errorf("decodeManifest accepted:\n%s", tt.doc)
			}
		})
	}
}
