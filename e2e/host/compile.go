package host

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// processModules is the compilation cache every Host of this process
// shares, so that a module is compiled once per process: compiling the
// filter takes seconds, and the e2e, chaos and load tests start many Hosts
// of the same module.
var processModules = newModuleCache(wazero.NewCompilationCache())

// moduleCache shares compiled modules between wazero runtimes. wazero's
// CompilationCache makes every runtime configured with it use one engine,
// which keeps the machine code of each module it compiled, keyed by the
// SHA-256 of the module's bytes (and the runtime's settings, the same for
// every Host). Closing a runtime leaves that code in the engine (only
// closing the cache, or the CompiledModule, would drop it), so a Host's
// Close never affects the others; the cache itself is never closed, and a
// module stays compiled for the life of the process.
type moduleCache struct {
	cache wazero.CompilationCache

	// One lock per module's bytes serializes its compilations, so that
	// Hosts started at the same time compile it once: the others wait,
	// then find it in the engine.
	mu    sync.Mutex
	locks map[[sha256.Size]byte]*sync.Mutex
}

func newModuleCache(c wazero.CompilationCache) *moduleCache {
	return &moduleCache{cache: c, locks: map[[sha256.Size]byte]*sync.Mutex{}}
}

// newRuntime is a runtime on the shared cache with WASI instantiated.
func (c *moduleCache) newRuntime(ctx context.Context) (wazero.Runtime, error) {
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(c.cache))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("host: wasi: %w", err)
	}
	return r, nil
}

// compile compiles wasm in r, a runtime from newRuntime. wazero still
// decodes and validates the bytes for each runtime (its CompiledModule
// belongs to one runtime); the machine code is made the first time only.
func (c *moduleCache) compile(ctx context.Context, r wazero.Runtime, wasm []byte) (wazero.CompiledModule, error) {
	sum := sha256.Sum256(wasm)
	c.mu.Lock()
	lock := c.locks[sum]
	if lock == nil {
		lock = &sync.Mutex{}
		c.locks[sum] = lock
	}
	c.mu.Unlock()

	lock.Lock()
	defer lock.Unlock()
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("host: compile module: %w", err)
	}
	return compiled, nil
}
