//go:build linux

package redistest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills redis-server if the test binary dies without running
// its cleanups (go test -timeout panics, SIGKILL), so no server is orphaned.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
