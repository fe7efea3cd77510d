package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadInputExitsNonZeroWithOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"-nope"}, 2, "flag provided but not defined"},
		{"no data dir", []string{"-addr", "127.0.0.1:0"}, 2, "-data-dir is required"},
		{"bad log level", []string{"-data-dir", t.TempDir(), "-log-level", "loud"}, 2, "unknown log level"},
		{"stray argument", []string{"-data-dir", t.TempDir(), "extra"}, 2, "unexpected arguments"},
		{"unspecified advertise", []string{"-data-dir", t.TempDir(), "-addr", "0.0.0.0:0"}, 1, "advertise address is required"},
		{"port taken", []string{"-data-dir", t.TempDir(), "-addr", ln.Addr().String()}, 1, "address already in use"},
		{"data dir is a file", []string{"-data-dir", file, "-addr", "127.0.0.1:0"}, 1, "data dir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(c.args, &stderr); code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("stderr lacks %q:\n%s", c.want, stderr.String())
			}
		})
	}
}
