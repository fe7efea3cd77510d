package crashtest

import "syscall"

// procAttr has the kernel kill a child when the test process dies, so that
// an interrupted test leaves no child behind.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
