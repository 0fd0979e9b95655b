//go:build !wasm

package main

import (
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// TestControlPlaneTokenEnv: control_plane.token_env puts the filter token
// in the VM's environment rather than in the route configuration; the
// callouts carry it. Unset, the plugin fails to start naming the field.
func TestControlPlaneTokenEnv(t *testing.T) {
	const name, token = "IDEMGATE_TEST_FILTER_TOKEN", "token-from-the-environment"
	config := withConfig(t, `"token": "demo-token-change-me"`, `"token_env": "`+name+`"`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		// The proxytest wasm runner starts the module with no environment
		// (see TestScope): only the native run can see the variable.
		if _, native := vm.(*vmContext); !native {
			host, reset := newHost(t, vm, config)
			defer reset()
			if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
				t.Errorf("StartPlugin() = %v with the variable invisible to the module, want failed", st)
			}
			checkErrorLog(t, host.GetErrorLogs(), "control_plane.token_env: environment variable "+name+" is not set")
			return
		}
		t.Run("unset", func(t *testing.T) {
			host, reset := newHost(t, vm, config)
			defer reset()
			if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
				t.Errorf("StartPlugin() = %v, want failed", st)
			}
			checkErrorLog(t, host.GetErrorLogs(), "control_plane.token_env: environment variable "+name+" is not set")
		})
		t.Run("set", func(t *testing.T) {
			t.Setenv(name, token)
			host, reset := startHost(t, vm, config)
			defer reset()
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			calls := host.GetCalloutAttributesFromContext(id)
			if len(calls) != 1 {
				t.Fatalf("callouts = %d, want the reserve", len(calls))
			}
			if got, _ := header(calls[0].Headers, "authorization"); got != "Bearer "+token {
				t.Errorf("authorization = %q, want the token from %s", got, name)
			}
			if got, _ := header(calls[0].Headers, ":path"); got != api.PathReserve {
				t.Errorf(":path = %q, want %s", got, api.PathReserve)
			}
		})
	})
}
