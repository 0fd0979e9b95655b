//go:build !linux

package redistest

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; cleanups stop
// the server.
func setDeathSignal(*exec.Cmd) {}
