package policy

import "github.com/idemgate/idemgate/controlplane/api"

// MaxKeyLength is the longest key a route may accept, in bytes: what the
// control plane stores.
const MaxKeyLength = api.MaxKeyLen
