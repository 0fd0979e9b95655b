package envoy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	istiov1alpha1 "istio.io/api/extensions/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/idemgate/idemgate/plugin/policy"
)

// placeholderDigest stands for the module image's digest in the manifests
// until a user fills in the one `make image` prints (README, "Install in
// Istio"). It is 64 hex digits so that the schema checks still apply.
var placeholderDigest = strings.Repeat("0", 64)

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// moduleRepo is where the manifests expect the module image.
const moduleRepo = "registry.example.com/idemgate/idemgate-wasm"

// checkPinned checks that url pulls the module image by digest and that
// the separate sha256 field names that same digest, a real one or the
// placeholder.
func checkPinned(url, sha, scheme string) error {
	if !digestRE.MatchString(sha) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits (the image digest, or the placeholder %s…)", sha, placeholderDigest[:8])
	}
	if want := scheme + moduleRepo + "@sha256:" + sha; url != want {
		return fmt.Errorf("url %q: want %q, pulled by the digest sha256 names", url, want)
	}
	return nil
}

func TestCheckPinned(t *testing.T) {
	real := strings.Repeat("ab", 32)
	tests := []struct {
		url, sha string
		ok       bool
	}{
		{"oci://" + moduleRepo + "@sha256:" + placeholderDigest, placeholderDigest, true},
		{"oci://" + moduleRepo + "@sha256:" + real, real, true},
		{"oci://" + moduleRepo + ":0.1.0", real, false},                       // a tag moves
		{"oci://" + moduleRepo + "@sha256:" + real, placeholderDigest, false}, // two digests
		{"oci://" + moduleRepo + "@sha256:" + real[:63], real[:63], false},
		{"oci://" + moduleRepo + "@sha256:" + strings.ToUpper(real), strings.ToUpper(real), false},
		{moduleRepo + "@sha256:" + real, real, false}, // scheme missing
	}
	for _, tt := range tests {
		if err := checkPinned(tt.url, tt.sha, "oci://"); (err == nil) != tt.ok {
			t.Errorf("checkPinned(%q, %q) = %v, want ok %v", tt.url, tt.sha, err, tt.ok)
		}
	}
}

// decodeFile decodes every document of a manifest file.
func decodeFile(t *testing.T, path string) []any {
	t.Helper()
	var objs []any
	for i, doc := range splitDocs(readYAML(t, path)) {
		obj, err := decodeManifest(doc)
		if err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func only[T any](t *testing.T, objs []any, what string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, found %d", what, len(found))
	}
	return found[0]
}

// istioWasm is what the checks read of a WasmPlugin or of a
// TrafficExtension's wasm: the fields both have.
type istioWasm struct {
	url, sha256  string
	phase        string
	failStrategy istiov1alpha1.FailStrategy
	pluginType   istiov1alpha1.PluginType
	env          []*istiov1alpha1.EnvVar
	pluginConfig *structpb.Struct
}

// problems collects what a manifest gets wrong, so that a check can be
// run on a broken copy and be seen to fail (TestIstioChecksFail).
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func trafficExtensionWasm(te *istiov1alpha1.TrafficExtension) istioWasm {
	w := te.GetWasm()
	return istioWasm{
		url: w.GetUrl(), sha256: w.GetSha256(), phase: te.GetPhase().String(),
		failStrategy: w.GetFailStrategy(), pluginType: w.GetType(),
		env: slices.Clone(w.GetVmConfig().GetEnv()), pluginConfig: w.GetPluginConfig(),
	}
}

// policySecrets parses a policy and returns the environment variables it
// reads its secrets from. A secret inline is a problem: the policy is
// readable by whoever reads the resource, and Envoy's config_dump shows it.
func policySecrets(js []byte, p *problems) (*policy.Config, []string) {
	cfg, err := policy.Parse(js)
	if err != nil {
		p.add("policy: %w", err)
		return nil, nil
	}
	var names []string
	if cfg.ControlPlane.TokenEnv == "" {
		p.add("control_plane: the token must come from token_env, not inline")
	} else {
		names = append(names, cfg.ControlPlane.TokenEnv)
	}
	for i, r := range cfg.Routes {
		if r.Scope.HMACKeyEnv == "" {
			p.add("routes[%d].scope: no hmac_key_env (an inline hmac_key, or none: low-entropy scope values would be exposed to a Redis dump)", i)
		} else if !slices.Contains(names, r.Scope.HMACKeyEnv) {
			names = append(names, r.Scope.HMACKeyEnv)
		}
	}
	return cfg, names
}

// resolveFromSecret follows each variable the policy reads from the
// proxy container's env to its Secret key, and resolves the policy with
// the Secret's values as the VM would see them: a wrong variable, Secret
// or key, or a key too short for HMAC, fails here as the filter would
// fail to start. controlToken is the control plane's.
func resolveFromSecret(cfg *policy.Config, names []string, proxyEnv []corev1.EnvVar, secrets []*corev1.Secret, controlToken string, p *problems) {
	vals := map[string]string{}
	for _, name := range names {
		i := slices.IndexFunc(proxyEnv, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 {
			p.add("the proxy container has no env %s", name)
			continue
		}
		ref := proxyEnv[i].ValueFrom
		if ref == nil || ref.SecretKeyRef == nil {
			p.add("the proxy's env %s is not from a Secret", name)
			continue
		}
		j := slices.IndexFunc(secrets, func(s *corev1.Secret) bool { return s.Name == ref.SecretKeyRef.Name })
		if j < 0 {
			p.add("env %s: no Secret %q in the proxy's namespace", name, ref.SecretKeyRef.Name)
			continue
		}
		v, ok := secrets[j].StringData[ref.SecretKeyRef.Key]
		if !ok {
			p.add("env %s: Secret %s has no key %s", name, secrets[j].Name, ref.SecretKeyRef.Key)
			continue
		}
		vals[name] = v
	}
	if err := cfg.ResolveEnv(func(k string) (string, bool) { v, ok := vals[k]; return v, ok }); err != nil {
		p.add("the filter would not start: %w", err)
	} else if cfg.ControlPlane.Token != controlToken {
		p.add("the filter's token differs from the control plane's (k8s/controlplane.yaml's Secret)")
	}
}

// secretsIn returns the Secrets of namespace ns among objs.
func secretsIn(objs []any, ns string) []*corev1.Secret {
	var out []*corev1.Secret
	for _, o := range objs {
		if s, ok := o.(*corev1.Secret); ok && s.Namespace == ns {
			out = append(out, s)
		}
	}
	return out
}

func istioProxyEnv(t *testing.T, spec corev1.PodSpec) []corev1.EnvVar {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == "istio-proxy" {
			return c.Env
		}
	}
	t.Fatal("no container named istio-proxy: Istio would not merge the env into its proxy")
	return nil
}

// istioWasmProblems checks what every Istio manifest of the filter must
// hold, given the env of the proxy container that runs it.
func istioWasmProblems(t *testing.T, w istioWasm, proxyEnv []corev1.EnvVar, secrets []*corev1.Secret) problems {
	t.Helper()
	sec, _, svc := controlPlane(t)
	var p problems
	if err := checkPinned(w.url, w.sha256, "oci://"); err != nil {
		p.add("%w", err)
	}
	if w.phase != "STATS" || w.failStrategy != istiov1alpha1.FailStrategy_FAIL_CLOSE || w.pluginType != istiov1alpha1.PluginType_HTTP {
		p.add("phase %v, failStrategy %v, type %v; want STATS, FAIL_CLOSE, HTTP", w.phase, w.failStrategy, w.pluginType)
	}
	// Istio hands the plugin pluginConfig as JSON: parse it as the filter does.
	js, err := protojson.Marshal(w.pluginConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, names := policySecrets(js, &p)
	if cfg == nil {
		return p
	}
	for _, name := range names {
		i := slices.IndexFunc(w.env, func(e *istiov1alpha1.EnvVar) bool { return e.GetName() == name })
		if i < 0 || w.env[i].GetValueFrom() != istiov1alpha1.EnvValueSource_HOST || w.env[i].GetValue() != "" {
			p.add("vmConfig.env: want %s with valueFrom HOST (from the proxy's environment, not inline)", name)
		}
	}
	// The callout cluster is Istio's name for the control plane's Service.
	m := regexp.MustCompile(`^outbound\|(\d+)\|\|([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$`).FindStringSubmatch(cfg.ControlPlane.Cluster)
	if want := []string{strconv.Itoa(int(svc.Spec.Ports[0].Port)), svc.Name, svc.Namespace}; m == nil || !slices.Equal(m[1:], want) {
		p.add("control_plane.cluster %q: want Istio's outbound|%s||%s.%s.svc.cluster.local, the Service of k8s/controlplane.yaml", cfg.ControlPlane.Cluster, want[0], want[1], want[2])
	}
	resolveFromSecret(cfg, names, proxyEnv, secrets, sec.StringData["IDEM_CONTROLPLANE_TOKEN"], &p)
	return p
}

func reportAll(t *testing.T, p problems) {
	t.Helper()
	for _, err := range p {
		t.Error(err)
	}
}

// trafficSelector is what WasmPlugin's and TrafficExtension's selectors share.
type trafficSelector interface {
	GetMode() typev1beta1.WorkloadMode
	GetPorts() []*typev1beta1.PortSelector
}

// inboundOnly checks that a sidecar's filter governs the requests the
// workload receives and not those it sends: with no match Istio applies
// it to CLIENT_AND_SERVER, and the workload's own outbound calls would
// need keys (and be scoped with no authenticated principal).
func inboundOnly[S trafficSelector](t *testing.T, match []S) {
	t.Helper()
	if len(match) != 1 || match[0].GetMode() != typev1beta1.WorkloadMode_SERVER || len(match[0].GetPorts()) != 0 {
		t.Errorf("match %v: want exactly [{mode: SERVER}] (no match is CLIENT_AND_SERVER: outbound requests governed too)", match)
	}
}

func TestIstioSidecar(t *testing.T) {
	secrets := secretsIn(decodeFile(t, "istio/secret.yaml"), "payments")
	workload := only[*appsv1.Deployment](t, decodeFile(t, "istio/workload-sidecar.yaml"), "Deployment")
	proxyEnv := istioProxyEnv(t, workload.Spec.Template.Spec)

	selects := func(t *testing.T, ns string, labels map[string]string) {
		if ns != workload.Namespace || len(labels) == 0 {
			t.Errorf("namespace %s, selector %v: want the workload's namespace %s and a selector", ns, labels, workload.Namespace)
		}
		for k, v := range labels {
			if workload.Spec.Template.Labels[k] != v {
				t.Errorf("selector %v does not select the workload's pods %v", labels, workload.Spec.Template.Labels)
			}
		}
	}
	t.Run("TrafficExtension", func(t *testing.T) {
		te := only[*istioResource[*istiov1alpha1.TrafficExtension]](t, decodeFile(t, "istio/trafficextension-sidecar.yaml"), "TrafficExtension")
		selects(t, te.Metadata.Namespace, te.Spec.GetSelector().GetMatchLabels())
		inboundOnly(t, te.Spec.GetMatch())
		reportAll(t, istioWasmProblems(t, trafficExtensionWasm(te.Spec), proxyEnv, secrets))
	})
	t.Run("WasmPlugin", func(t *testing.T) {
		wp := only[*istioResource[*istiov1alpha1.WasmPlugin]](t, decodeFile(t, "istio/wasmplugin.yaml"), "WasmPlugin")
		s := wp.Spec
		selects(t, wp.Metadata.Namespace, s.GetSelector().GetMatchLabels())
		inboundOnly(t, s.GetMatch())
		reportAll(t, istioWasmProblems(t, istioWasm{
			url: s.GetUrl(), sha256: s.GetSha256(), phase: s.GetPhase().String(),
			failStrategy: s.GetFailStrategy(), pluginType: s.GetType(),
			env: s.GetVmConfig().GetEnv(), pluginConfig: s.GetPluginConfig(),
		}, proxyEnv, secrets))
	})
}

func TestIstioWaypoint(t *testing.T) {
	objs := decodeFile(t, "istio/trafficextension-waypoint.yaml")
	te := only[*istioResource[*istiov1alpha1.TrafficExtension]](t, objs, "TrafficExtension")
	gw := only[*gwapiv1.Gateway](t, objs, "Gateway")
	cm := only[*corev1.ConfigMap](t, objs, "ConfigMap")

	// Waypoints ignore selector: the extension must target the waypoint.
	refs := te.Spec.GetTargetRefs()
	if te.Spec.GetSelector() != nil || len(refs) != 1 || refs[0].GetGroup() != "gateway.networking.k8s.io" || refs[0].GetKind() != "Gateway" || refs[0].GetName() != gw.Name {
		t.Errorf("targetRefs %v, selector %v: want only targetRefs to the Gateway %s", refs, te.Spec.GetSelector(), gw.Name)
	}
	if gw.Spec.GatewayClassName != "istio-waypoint" || gw.Namespace != te.Metadata.Namespace {
		t.Errorf("Gateway %s/%s of class %s: want class istio-waypoint in the TrafficExtension's namespace", gw.Namespace, gw.Name, gw.Spec.GatewayClassName)
	}
	p := gw.Spec.Infrastructure
	if p == nil || p.ParametersRef == nil || p.ParametersRef.Kind != "ConfigMap" || p.ParametersRef.Name != cm.Name {
		t.Fatalf("the Gateway's infrastructure.parametersRef must name the ConfigMap %s", cm.Name)
	}
	// Istio merges the ConfigMap's "deployment" into the waypoint's
	// Deployment: decode it strictly as one.
	var patch appsv1.Deployment
	if err := strictDecode([]byte(cm.Data["deployment"]), &patch); err != nil {
		t.Fatalf("ConfigMap %s deployment: %v", cm.Name, err)
	}
	reportAll(t, istioWasmProblems(t, trafficExtensionWasm(te.Spec), istioProxyEnv(t, patch.Spec.Template.Spec), secretsIn(decodeFile(t, "istio/secret.yaml"), te.Metadata.Namespace)))
}

// TestIstioChecksFail breaks the sidecar TrafficExtension and its Secret
// one way at a time: each must be caught.
func TestIstioChecksFail(t *testing.T) {
	te := only[*istioResource[*istiov1alpha1.TrafficExtension]](t, decodeFile(t, "istio/trafficextension-sidecar.yaml"), "TrafficExtension")
	workload := only[*appsv1.Deployment](t, decodeFile(t, "istio/workload-sidecar.yaml"), "Deployment")
	secrets := secretsIn(decodeFile(t, "istio/secret.yaml"), "payments")
	base := func() (istioWasm, []corev1.EnvVar, []*corev1.Secret) {
		sec := secrets[0].DeepCopy()
		return trafficExtensionWasm(te.Spec), istioProxyEnv(t, workload.Spec.Template.Spec), []*corev1.Secret{sec}
	}
	mutate := func(s *structpb.Struct, path string, v any) *structpb.Struct {
		js, _ := protojson.Marshal(s)
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatal(err)
		}
		cp := m["control_plane"].(map[string]any)
		scope := m["routes"].([]any)[0].(map[string]any)["scope"].(map[string]any)
		switch path {
		case "token":
			delete(cp, "token_env")
			cp["token"] = v
		case "hmac_key":
			delete(scope, "hmac_key_env")
			scope["hmac_key"] = v
		case "cluster":
			cp["cluster"] = v
		}
		out, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name   string
		change func(*istioWasm, *[]corev1.EnvVar, []*corev1.Secret)
	}{
		{"tag instead of digest", func(w *istioWasm, _ *[]corev1.EnvVar, _ []*corev1.Secret) {
			w.url = "oci://" + moduleRepo + ":0.1.0"
		}},
		{"FAIL_OPEN", func(w *istioWasm, _ *[]corev1.EnvVar, _ []*corev1.Secret) {
			w.failStrategy = istiov1alpha1.FailStrategy_FAIL_OPEN
		}},
		{"inline token", func(w *istioWasm, _ *[]corev1.EnvVar, _ []*corev1.Secret) {
			w.pluginConfig = mutate(w.pluginConfig, "token", "replace-with-openssl-rand-hex-32")
		}},
		{"inline hmac key", func(w *istioWasm, _ *[]corev1.EnvVar, _ []*corev1.Secret) {
			w.pluginConfig = mutate(w.pluginConfig, "hmac_key", strings.Repeat("k", 48))
		}},
		{"cluster of another service", func(w *istioWasm, _ *[]corev1.EnvVar, _ []*corev1.Secret) {
			w.pluginConfig = mutate(w.pluginConfig, "cluster", "outbound|8081||other.idemgate.svc.cluster.local")
		}},
		{"env inline", func(w *istioWasm, _ *[]corev1.EnvVar, _ []*corev1.Secret) {
			w.env = []*istiov1alpha1.EnvVar{{Name: "IDEMGATE_FILTER_TOKEN", Value: "x"}, w.env[1]}
		}},
		{"env missing from the proxy", func(_ *istioWasm, env *[]corev1.EnvVar, _ []*corev1.Secret) {
			*env = (*env)[1:]
		}},
		{"scope key too short", func(_ *istioWasm, _ *[]corev1.EnvVar, s []*corev1.Secret) {
			s[0].StringData["IDEMGATE_SCOPE_KEY"] = "short"
		}},
		{"token differs from the control plane's", func(_ *istioWasm, _ *[]corev1.EnvVar, s []*corev1.Secret) {
			s[0].StringData["IDEMGATE_FILTER_TOKEN"] = "another-token-0123456789"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, env, sec := base()
			env = slices.Clone(env)
			tt.change(&w, &env, sec)
			p := istioWasmProblems(t, w, env, sec)
			t.Log(p) // what was caught, with -v
			if len(p) == 0 {
				t.Error("the checks accepted it")
			}
		})
	}
}

// envoyGateway is what envoy/envoy-gateway/ holds.
type envoyGateway struct {
	secrets []*corev1.Secret
	proxy   *egv1a1.EnvoyProxy
	class   *gwapiv1.GatewayClass
	gateway *gwapiv1.Gateway
	route   *gwapiv1.HTTPRoute
	client  *egv1a1.ClientTrafficPolicy
	backend *egv1a1.BackendTrafficPolicy
	policy  *egv1a1.EnvoyExtensionPolicy
}

func loadEnvoyGateway(t *testing.T) *envoyGateway {
	t.Helper()
	var objs []any
	for _, f := range []string{"envoyproxy.yaml", "gateway.yaml", "extensionpolicy.yaml"} {
		objs = append(objs, decodeFile(t, "envoy-gateway/"+f)...)
	}
	eg := &envoyGateway{
		proxy:   only[*egv1a1.EnvoyProxy](t, objs, "EnvoyProxy"),
		class:   only[*gwapiv1.GatewayClass](t, objs, "GatewayClass"),
		gateway: only[*gwapiv1.Gateway](t, objs, "Gateway"),
		route:   only[*gwapiv1.HTTPRoute](t, objs, "HTTPRoute"),
		client:  only[*egv1a1.ClientTrafficPolicy](t, objs, "ClientTrafficPolicy"),
		backend: only[*egv1a1.BackendTrafficPolicy](t, objs, "BackendTrafficPolicy"),
		policy:  only[*egv1a1.EnvoyExtensionPolicy](t, objs, "EnvoyExtensionPolicy"),
	}
	eg.secrets = secretsIn(objs, eg.proxy.Namespace)
	return eg
}

// bootstrapCluster decodes the EnvoyProxy's bootstrap (a YAML string Envoy
// Gateway merges into its own) with Envoy's v3 types, validates it, and
// returns its static cluster named name.
func bootstrapCluster(b *egv1a1.ProxyBootstrap, name string) (*clusterv3.Cluster, error) {
	if b == nil || b.Type == nil || *b.Type != egv1a1.BootstrapTypeMerge || b.Value == nil {
		return nil, fmt.Errorf("spec.bootstrap: want type Merge with a value (Replace would drop Envoy Gateway's own bootstrap)")
	}
	js, err := yaml.YAMLToJSON([]byte(*b.Value))
	if err != nil {
		return nil, fmt.Errorf("spec.bootstrap.value: %w", err)
	}
	bs := new(bootstrapv3.Bootstrap)
	if err := protojson.Unmarshal(js, bs); err != nil {
		return nil, fmt.Errorf("spec.bootstrap.value: %w", err)
	}
	if err := bs.ValidateAll(); err != nil {
		return nil, fmt.Errorf("spec.bootstrap.value: %w", err)
	}
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("spec.bootstrap.value: no static cluster %q (control_plane.cluster)", name)
}

// envoyGatewayProblems checks the Envoy Gateway manifests against each
// other, the control plane's manifests and the filter's policy.
func envoyGatewayProblems(t *testing.T, eg *envoyGateway) problems {
	t.Helper()
	sec, _, svc := controlPlane(t)
	var p problems

	// The proxies use the EnvoyProxy; the policy attaches to their Gateway.
	if r := eg.class.Spec.ParametersRef; r == nil || r.Kind != "EnvoyProxy" || r.Name != eg.proxy.Name || r.Namespace == nil || string(*r.Namespace) != eg.proxy.Namespace {
		p.add("GatewayClass %s: parametersRef must name the EnvoyProxy %s/%s", eg.class.Name, eg.proxy.Namespace, eg.proxy.Name)
	}
	if string(eg.gateway.Spec.GatewayClassName) != eg.class.Name {
		p.add("Gateway %s: class %s, want %s", eg.gateway.Name, eg.gateway.Spec.GatewayClassName, eg.class.Name)
	}
	refs := eg.policy.Spec.TargetRefs
	if eg.policy.Namespace != eg.gateway.Namespace || len(refs) != 1 || refs[0].Kind != "Gateway" || string(refs[0].Name) != eg.gateway.Name {
		p.add("EnvoyExtensionPolicy targetRefs %v: want the Gateway %s/%s", refs, eg.gateway.Namespace, eg.gateway.Name)
	}
	if len(eg.policy.Spec.Wasm) != 1 {
		p.add("EnvoyExtensionPolicy: want one wasm extension, got %d", len(eg.policy.Spec.Wasm))
		return p
	}
	w := eg.policy.Spec.Wasm[0]
	if w.Code.Type != egv1a1.ImageWasmCodeSourceType || w.Code.Image == nil || w.Code.Image.SHA256 == nil {
		p.add("wasm code: want type Image with sha256")
	} else if err := checkPinned(w.Code.Image.URL, *w.Code.Image.SHA256, ""); err != nil {
		p.add("wasm code image: %w", err)
	}
	// Stated, not left to the default: a VM that fails refuses requests.
	if w.FailOpen == nil || *w.FailOpen {
		p.add("wasm failOpen: want false, stated")
	}
	if w.Config == nil {
		p.add("wasm config: the policy is missing")
		return p
	}
	cfg, names := policySecrets(w.Config.Raw, &p)
	if cfg == nil {
		return p
	}
	var hostKeys []string
	if w.Env != nil {
		hostKeys = w.Env.HostKeys
	}
	for _, name := range names {
		if !slices.Contains(hostKeys, name) {
			p.add("wasm env.hostKeys %v: want %s, passed from Envoy's environment", hostKeys, name)
		}
	}
	var env []corev1.EnvVar
	if k := eg.proxy.Spec.Provider; k != nil && k.Kubernetes != nil && k.Kubernetes.EnvoyDeployment != nil && k.Kubernetes.EnvoyDeployment.Container != nil {
		env = k.Kubernetes.EnvoyDeployment.Container.Env
	}
	resolveFromSecret(cfg, names, env, eg.secrets, sec.StringData["IDEM_CONTROLPLANE_TOKEN"], &p)

	// The callout cluster: the control plane's Service, HTTP/1.1, closing
	// idle connections before the control plane does (5 minutes).
	c, err := bootstrapCluster(eg.proxy.Spec.Bootstrap, cfg.ControlPlane.Cluster)
	if err != nil {
		p.add("EnvoyProxy %s: %w", eg.proxy.Name, err)
	} else {
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if want := fmt.Sprintf("%s.%s.svc.cluster.local:%d", svc.Name, svc.Namespace, svc.Spec.Ports[0].Port); fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()) != want {
			p.add("cluster %s: address %s:%d, want the control plane's Service %s", c.GetName(), sa.GetAddress(), sa.GetPortValue(), want)
		}
		opts := new(httpv3.HttpProtocolOptions)
		anyOpts := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if anyOpts == nil || anyOpts.UnmarshalTo(opts) != nil || opts.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil {
			p.add("cluster %s: want explicit HTTP/1.1 (HttpProtocolOptions)", c.GetName())
		} else if idle := opts.GetCommonHttpProtocolOptions().GetIdleTimeout(); idle == nil || idle.AsDuration() >= 5*time.Minute {
			p.add("cluster %s: idle_timeout %v, want one below the control plane's 5-minute idle close", c.GetName(), idle.AsDuration())
		}
	}

	// Envoy's own limits must not answer before the filter does.
	need := int64(0)
	for _, r := range cfg.Routes {
		need = max(need, int64(r.MaxBodyBytes), int64(r.MaxStoredResponseBytes))
	}
	if c := eg.client.Spec.Connection; c == nil || c.BufferLimit == nil || c.BufferLimit.Value() < need {
		p.add("ClientTrafficPolicy connection.bufferLimit: want at least %d bytes (max_body_bytes, max_stored_response_bytes)", need)
	}
	if c := eg.backend.Spec.Connection; c == nil || c.BufferLimit == nil || c.BufferLimit.Value() < need {
		p.add("BackendTrafficPolicy connection.bufferLimit: want at least %d bytes", need)
	}
	for i, rule := range eg.route.Spec.Rules {
		if rule.Retry != nil {
			p.add("HTTPRoute rules[%d]: a retry re-sends a request the upstream may have executed", i)
		}
		d := time.Duration(0)
		if rule.Timeouts != nil && rule.Timeouts.Request != nil {
			d, _ = time.ParseDuration(string(*rule.Timeouts.Request))
		}
		for _, r := range cfg.Routes {
			if d == 0 || d >= r.Lease {
				p.add("HTTPRoute rules[%d]: timeouts.request %v, want one below the lease %v", i, d, r.Lease)
			}
		}
	}
	return p
}

func TestEnvoyGateway(t *testing.T) {
	reportAll(t, envoyGatewayProblems(t, loadEnvoyGateway(t)))
}

// TestEnvoyGatewayChecksFail breaks the Envoy Gateway manifests one way at
// a time: each must be caught.
func TestEnvoyGatewayChecksFail(t *testing.T) {
	tests := []struct {
		name   string
		change func(*envoyGateway)
	}{
		{"fail open", func(eg *envoyGateway) { *eg.policy.Spec.Wasm[0].FailOpen = true }},
		{"failOpen unstated", func(eg *envoyGateway) { eg.policy.Spec.Wasm[0].FailOpen = nil }},
		{"digest in url only", func(eg *envoyGateway) { eg.policy.Spec.Wasm[0].Code.Image.SHA256 = nil }},
		{"secret not passed to the VM", func(eg *envoyGateway) { eg.policy.Spec.Wasm[0].Env.HostKeys = eg.policy.Spec.Wasm[0].Env.HostKeys[:1] }},
		{"secret not in Envoy's env", func(eg *envoyGateway) {
			c := eg.proxy.Spec.Provider.Kubernetes.EnvoyDeployment.Container
			c.Env = c.Env[1:]
		}},
		{"bootstrap replaced", func(eg *envoyGateway) { *eg.proxy.Spec.Bootstrap.Type = egv1a1.BootstrapTypeReplace }},
		{"cluster renamed", func(eg *envoyGateway) {
			v := strings.ReplaceAll(*eg.proxy.Spec.Bootstrap.Value, "name: idemgate_controlplane", "name: controlplane")
			eg.proxy.Spec.Bootstrap.Value = &v
		}},
		{"cluster on HTTP/2", func(eg *envoyGateway) {
			v := strings.ReplaceAll(*eg.proxy.Spec.Bootstrap.Value, "http_protocol_options: {}", "http2_protocol_options: {}")
			eg.proxy.Spec.Bootstrap.Value = &v
		}},
		{"cluster idle timeout too long", func(eg *envoyGateway) {
			v := strings.ReplaceAll(*eg.proxy.Spec.Bootstrap.Value, "idle_timeout: 60s", "idle_timeout: 600s")
			eg.proxy.Spec.Bootstrap.Value = &v
		}},
		{"cluster on another port", func(eg *envoyGateway) {
			v := strings.ReplaceAll(*eg.proxy.Spec.Bootstrap.Value, "port_value: 8081", "port_value: 8080")
			eg.proxy.Spec.Bootstrap.Value = &v
		}},
		{"bootstrap field misspelt", func(eg *envoyGateway) {
			v := strings.ReplaceAll(*eg.proxy.Spec.Bootstrap.Value, "connect_timeout", "connect_timout")
			eg.proxy.Spec.Bootstrap.Value = &v
		}},
		{"default buffer limit", func(eg *envoyGateway) { eg.client.Spec.Connection = nil }},
		{"route retries", func(eg *envoyGateway) { eg.route.Spec.Rules[0].Retry = &gwapiv1.HTTPRouteRetry{} }},
		{"route timeout past the lease", func(eg *envoyGateway) {
			d := gwapiv1.Duration("45s")
			eg.route.Spec.Rules[0].Timeouts.Request = &d
		}},
		{"policy on another gateway", func(eg *envoyGateway) { eg.policy.Spec.TargetRefs[0].Name = "other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eg := loadEnvoyGateway(t)
			tt.change(eg)
			p := envoyGatewayProblems(t, eg)
			t.Log(p) // what was caught, with -v
			if len(p) == 0 {
				t.Error("the checks accepted it")
			}
		})
	}
}

// TestOneModuleDigest: every manifest pins the same module image, so that
// filling in the digest (README) is one substitution, and the control
// plane's image is pinned by digest too.
func TestOneModuleDigest(t *testing.T) {
	digests := map[string][]string{}
	for _, f := range []string{"istio/trafficextension-sidecar.yaml", "istio/trafficextension-waypoint.yaml", "istio/wasmplugin.yaml", "envoy-gateway/extensionpolicy.yaml"} {
		for _, m := range regexp.MustCompile(`idemgate-wasm@sha256:([0-9a-f]+)`).FindAllSubmatch(readYAML(t, f), -1) {
			digests[string(m[1])] = append(digests[string(m[1])], f)
		}
	}
	if len(digests) != 1 {
		t.Errorf("module image digests %v: want one, the same everywhere", digests)
	}
	_, dep, _ := controlPlane(t)
	img := dep.Spec.Template.Spec.Containers[0].Image
	if _, d, ok := strings.Cut(img, "@sha256:"); !ok || !digestRE.MatchString(d) {
		t.Errorf("control plane image %q: want it pinned by digest (…@sha256:<64 hex>)", img)
	}
}
