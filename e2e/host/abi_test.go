package host

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

func TestABIFunctionsRefuseDuplicates(t *testing.T) {
	ok := func(context.Context) uint32 { return statusOK }
	tests := []struct {
		name    string
		areas   []abiArea
		want    int    // functions listed
		wantErr string // substring of the error; "" means none
	}{
		{name: "the host's ABI", areas: abi, want: 23},
		{name: "distinct", areas: []abiArea{{"a", []hostFunc{{"f", ok}}}, {"b", []hostFunc{{"g", ok}}}}, want: 2},
		{name: "one name in two areas", areas: []abiArea{{"a", []hostFunc{{"f", ok}}}, {"b", []hostFunc{{"f", ok}}}},
			wantErr: "f is exported by both a and b"},
		{name: "one name twice in an area", areas: []abiArea{{"a", []hostFunc{{"f", ok}, {"f", ok}}}},
			wantErr: "f is exported by both a and a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			funcs, err := abiFunctions(tt.areas)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("abiFunctions() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(funcs) != tt.want {
				t.Fatalf("abiFunctions() = %d functions, %v; want %d", len(funcs), err, tt.want)
			}
		})
	}
}

// TestABIProvidesModuleImports: every function the module imports from
// "env" is one of the host's, with the same signature, whichever area
// file it lives in.
func TestABIProvidesModuleImports(t *testing.T) {
	ctx := context.Background()
	wasm := readModule(t)
	r, err := processModules.newRuntime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	h := &Host{runtime: r}
	if err := h.instantiateABI(ctx); err != nil {
		t.Fatal(err)
	}
	exports := r.Module("env").ExportedFunctionDefinitions()
	compiled, err := processModules.compile(ctx, r, wasm)
	if err != nil {
		t.Fatal(err)
	}
	var imported int
	for _, def := range compiled.ImportedFunctions() {
		module, name, _ := def.Import()
		if module != "env" {
			continue
		}
		imported++
		got, ok := exports[name]
		if !ok {
			t.Errorf("the module imports env.%s: no ABI area exports it", name)
			continue
		}
		if !sameSignature(got, def) {
			t.Errorf("env.%s: the host's is %v -> %v, the module imports %v -> %v",
				name, got.ParamTypes(), got.ResultTypes(), def.ParamTypes(), def.ResultTypes())
		}
	}
	if imported == 0 {
		t.Fatal("the module imports nothing from env: not the proxy-wasm filter")
	}
}

func sameSignature(a, b api.FunctionDefinition) bool {
	return slices.Equal(a.ParamTypes(), b.ParamTypes()) && slices.Equal(a.ResultTypes(), b.ResultTypes())
}
