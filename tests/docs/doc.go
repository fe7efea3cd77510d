// Package docs tests that the documentation keeps up with the code: every
// package of the module has a package comment and a row in the README's
// Layout table (and every row names a package), and every sentinel error
// of package kv has an HTTP status in internal/wire's table.
package docs
