package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tidwall/gjson"
)

// vmContext is created once per Wasm VM (one per Envoy worker thread).
type vmContext struct {
	// Embedded for the no-op OnVMStart: the VM configuration is unused.
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// pluginContext holds one plugin configuration; Envoy creates one per
// filter config in each VM.
type pluginContext struct {
	// Embedded for the no-op OnTick, OnQueueReady, OnPluginDone and
	// NewTcpContext: this is an HTTP-only filter.
	types.DefaultPluginContext
}

// OnPluginStart implements types.PluginContext. Returning
// OnPluginStartStatusFailed makes Envoy reject the filter config, which is
// better than serving traffic with a configuration we do not understand.
func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	data, err := readPluginConfiguration(pluginConfigurationSize)
	if err == nil {
		err = validatePluginConfiguration(data)
	}
	if err != nil {
		proxywasm.LogErrorf("idempotency filter: invalid plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("idempotency filter started (%d bytes of configuration)", len(data))
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{}
}

// readPluginConfiguration returns the raw configuration, or nil when none is
// set. Hosts report an empty configuration as NotFound rather than as an
// empty buffer, so that is not an error.
func readPluginConfiguration(size int) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	data, err := proxywasm.GetPluginConfiguration()
	if errors.Is(err, types.ErrorStatusNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugin configuration: %w", err)
	}
	return data, nil
}

// errConfigNotObject and errConfigInvalidJSON name what is wrong with a
// configuration, so logs (and tests) can tell the cases apart.
var (
	errConfigInvalidJSON = errors.New("not valid JSON")
	errConfigNotObject   = errors.New("not a JSON object")
)

// validatePluginConfiguration accepts an empty configuration (all defaults)
// or a JSON object. It is pure so that it can be tested without a host.
func validatePluginConfiguration(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if !gjson.ValidBytes(data) {
		return errConfigInvalidJSON
	}
	switch r := gjson.ParseBytes(data); {
	case r.IsObject():
		return nil
	case r.IsArray():
		return fmt.Errorf("%w (got an array)", errConfigNotObject)
	default:
		return fmt.Errorf("%w (got %s)", errConfigNotObject, strings.ToLower(r.Type.String()))
	}
}

// httpContext is created per HTTP stream. The embedded default returns
// types.ActionContinue from every callback: requests and responses pass
// through unchanged until the idempotency logic lands.
type httpContext struct {
	types.DefaultHttpContext
}
