package host

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestVMEnvironment: the VM's environment reaches the compiled module
// (Envoy's vm_config.environment_variables), which the filter's
// scope.hmac_key_env reads at plugin start. The SDK's wasm test runner
// cannot pass an environment, so this is where the compiled module's
// side of it is tested.
func TestVMEnvironment(t *testing.T) {
	wasm := readModule(t)
	demo := readFile(t, lockConfig)
	cfg := strings.Replace(string(demo), `"scope": { "headers": ["authorization"] }`,
		`"scope": { "headers": ["authorization"], "hmac_key_env": "IDEMGATE_SCOPE_KEY" }`, 1)
	if cfg == string(demo) {
		t.Fatal("testdata/lock.json's scope line changed; update this test")
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{"key set", map[string]string{"IDEMGATE_SCOPE_KEY": strings.Repeat("k", 32)}, false},
		{"key missing", nil, true},
		{"key too short", map[string]string{"IDEMGATE_SCOPE_KEY": "short"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(context.Background(), Config{
				Wasm: wasm, PluginConfig: []byte(cfg), Env: tt.env, Upstream: "127.0.0.1:1",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err == nil {
				h.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("New() error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
