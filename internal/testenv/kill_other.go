//go:build !unix

package testenv

import "os/exec"

// kill kills cmd's process.
func kill(cmd *exec.Cmd) { cmd.Process.Kill() }
