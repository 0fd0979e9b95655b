// Command plugin is the idemgate HTTP filter: a proxy-wasm module that Envoy
// loads as build/idempotency.wasm.
//
// For now it is a deliberately minimal pass-through filter: it validates its
// configuration and lets every request and response through unchanged. The
// policy and reservation logic described in DESIGN.md arrives with a later
// issue; this file stays thin wiring either way.
package main

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

// main is never called by the host: a c-shared (WASI reactor) module is
// driven through its exported proxy_on_* functions, not through main.
func main() {}

// init registers the VM context; the SDK requires exactly one entrypoint to
// be set during init.
func init() {
	proxywasm.SetVMContext(&vmContext{})
}
