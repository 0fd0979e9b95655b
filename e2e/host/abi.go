package host

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// Status values of the proxy-wasm ABI (0.2.x).
const (
	statusOK              = 0
	statusNotFound        = 1
	statusBadArgument     = 2
	statusEmpty           = 7
	statusCasMismatch     = 8
	statusInternalFailure = 10
)

// Buffer and map types of the ABI.
const (
	bufRequestBody      = 0
	bufResponseBody     = 1
	bufCallResponseBody = 4
	bufVMConfiguration  = 6
	bufPluginConfig     = 7

	mapRequestHeaders      = 0
	mapRequestTrailers     = 1
	mapResponseHeaders     = 2
	mapResponseTrailers    = 3
	mapCallResponseHeaders = 6
	mapCallResponseTrail   = 7

	streamRequest  = 0
	streamResponse = 1
)

// hostFunc is one function of the ABI that the host exports under "env".
// Every one finds its worker in the call's context (workerFrom), so the
// functions hold no state of their own.
type hostFunc struct {
	name string
	fn   any // a function wazero's HostFunctionBuilder.WithFunc accepts
}

// abiArea is one area of the ABI: its functions live in one abi_*.go file.
type abiArea struct {
	name  string
	funcs []hostFunc
}

// abi is every function the Go SDK imports for HTTP filters, by area.
var abi = []abiArea{
	{"context and ticks", contextABI},
	{"logging and properties", loggingABI},
	{"buffers", bufferABI},
	{"header maps", headerABI},
	{"stream control", streamABI},
	{"HTTP callouts", calloutABI},
	{"shared data", sharedDataABI},
	{"metrics", metricsABI},
}

// abiFunctions lists the areas' functions, refusing a name exported by
// two areas: wazero's builder would keep the last one silently.
func abiFunctions(areas []abiArea) ([]hostFunc, error) {
	var all []hostFunc
	seen := map[string]string{}
	for _, a := range areas {
		for _, f := range a.funcs {
			if prev, dup := seen[f.name]; dup {
				return nil, fmt.Errorf("host: %s is exported by both %s and %s", f.name, prev, a.name)
			}
			seen[f.name] = a.name
			all = append(all, f)
		}
	}
	return all, nil
}

// instantiateABI provides the "env" functions a proxy-wasm module
// imports: the ones the Go SDK uses for HTTP filters. A module importing
// one that is missing fails to instantiate, naming it.
func (h *Host) instantiateABI(ctx context.Context) error {
	funcs, err := abiFunctions(abi)
	if err != nil {
		return err
	}
	b := h.runtime.NewHostModuleBuilder("env")
	for _, f := range funcs {
		b.NewFunctionBuilder().WithFunc(f.fn).Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("host: proxy-wasm ABI: %w", err)
	}
	return nil
}

// read copies size bytes at ptr out of the module's memory.
func read(m api.Module, ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	b, ok := m.Memory().Read(ptr, size)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

// give hands data to the module the ABI's way: memory the module
// allocates (proxy_on_memory_allocate), its address and size written at
// retPtr and retSize.
func (w *worker) give(m api.Module, data []byte, retPtr, retSize uint32) uint32 {
	var ptr uint32
	if len(data) > 0 {
		res, err := m.ExportedFunction("proxy_on_memory_allocate").Call(w.ctx, uint64(len(data)))
		if err != nil || len(res) == 0 {
			return statusInternalFailure
		}
		ptr = uint32(res[0])
		if !m.Memory().Write(ptr, data) {
			return statusInternalFailure
		}
	}
	if !m.Memory().WriteUint32Le(retPtr, ptr) || !m.Memory().WriteUint32Le(retSize, uint32(len(data))) {
		return statusBadArgument
	}
	return statusOK
}
