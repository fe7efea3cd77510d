// Package leaky is a public package that leaks internal types, for the
// checker's own test (TestCheckerFindsLeaks).
package leaky

import (
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/kv"
)

// Files is an alias of an internal type.
type Files = tlsutil.Files

// Config has a field of an internal type.
type Config struct {
	Name  string
	Store *tlsutil.Store
	files tlsutil.Files // unexported: not part of the API
}

// Make returns an internal type.
func Make() (tlsutil.Pair, error) { return tlsutil.Pair{}, nil }

// Clean names no internal type.
func Clean(kv.Entry) error { return nil }

// Holder has an exported method that takes an internal type in a map.
type Holder struct{}

// Take takes it.
func (Holder) Take(map[string][]tlsutil.CertOptions) {}

func (Holder) take(tlsutil.Files) {} // unexported: not part of the API

// Opts is a func type whose parameter is internal.
type Opts func(*tlsutil.Files)

// Default is a variable of an internal type.
var Default tlsutil.Files

// ErrA is re-exported from kv.
var ErrA = kv.ErrNotFound
