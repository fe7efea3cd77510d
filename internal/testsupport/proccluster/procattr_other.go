//go:build !linux

package proccluster

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
