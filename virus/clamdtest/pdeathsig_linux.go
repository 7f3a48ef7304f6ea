package clamdtest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill clamd when the test binary dies, so a crashed or
// interrupted test leaves no daemon behind.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
