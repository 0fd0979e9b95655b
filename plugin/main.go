// Command plugin is the idemgate HTTP filter: a proxy-wasm module that Envoy
// loads as build/idempotency.wasm.
//
// The plugin configuration is the JSON policy of package policy, parsed at
// plugin start (filter.go). The request path (request.go) reserves the key
// at the control plane before a governed request goes upstream; the
// response path (response.go) stores or releases it. This file stays thin
// wiring.
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
