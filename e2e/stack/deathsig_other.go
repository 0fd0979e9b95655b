//go:build !linux

package stack

import (
	"os/exec"
	"syscall"
)

// setDeathSignal: only Linux can tie a child's life to its parent's; the
// own process group keeps a terminal's Ctrl-C for the demo alone.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
