//go:build !failpoints

package mux

import (
	"net"
	"net/http"
)

type faults struct{}

func (faults) allow(string) error                  { return nil }
func (faults) track(_ string, c net.Conn) net.Conn { return c }

// FailpointHandler is nil without the failpoints build tag.
func (m *Mux) FailpointHandler() http.Handler { return nil }
