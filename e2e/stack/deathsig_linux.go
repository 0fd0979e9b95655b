package stack

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the child when the process that started it dies, so
// a crashed demo or test leaves no stray servers on the loopback ports.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
