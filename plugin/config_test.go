//go:build !wasm

package main

// demoConfig is the demo policy of plugin/policy/README.md with a short
// callout timeout: POST /payments requires a key, the scope is the
// Authorization header, fail-closed.
const demoConfig = `{
  "control_plane": {
    "cluster": "idemgate_controlplane",
    "authority": "idemgate-controlplane",
    "token": "demo-token-change-me",
    "timeout": "250ms"
  },
  "routes": [
    {
      "match": { "path": "/payments", "methods": ["POST"] },
      "key_header": "Idempotency-Key",
      "required": true,
      "scope": { "headers": ["authorization"] },
      "max_body_bytes": 1048576,
      "ttl": "24h",
      "lease": "30s",
      "on_duplicate": "replay",
      "on_in_progress": "conflict",
      "failure_mode": "closed",
      "on_indeterminate": "lock"
    }
  ]
}`
