//go:build !linux

package crashtest

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
