//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

// kill kills cmd's process, and its process group when it leads one (Setpgid).
func kill(cmd *exec.Cmd) {
	if a := cmd.SysProcAttr; a != nil && a.Setpgid {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return
	}
	cmd.Process.Kill()
}
