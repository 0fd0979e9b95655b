package stack

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the child when the process that started it dies, so
// a crashed demo or test leaves no stray servers on the loopback ports. The
// child gets its own process group: a terminal's Ctrl-C reaches only the
// demo, which then stops its components in order instead of seeing them
// all "crash" at once.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
