// Package ui is raftkv's web UI: a few static files (plain HTML, CSS and
// JavaScript modules, no build step) embedded in the binary and served by
// every node under /ui/ on the one port. The page is a client of the
// public HTTP API like any other: it carries the user's ACL token in
// X-Consul-Token and sees exactly what that token may see, so the UI needs
// no authority of its own and its files need no token.
//
// The files live in web/; see web/README.md for how they are organised.
package ui
