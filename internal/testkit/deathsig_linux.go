package testkit

import (
	"os/exec"
	"syscall"
)

// dieWithTest has the kernel kill cmd if the test binary dies first (a timeout's panic runs no
// cleanup), so no child outlives the test holding a port.
func dieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
