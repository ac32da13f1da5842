package main

import (
	"os/exec"
	"syscall"
)

// dieWithTest has the kernel kill cmd if the test binary dies first (a timeout's panic runs no
// cleanup), so no receiver outlives the test holding a port.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
