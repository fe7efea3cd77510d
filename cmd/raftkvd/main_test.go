package main

import (
	"bytes"
	"io"
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
		{"session TTL minimum too short", []string{"-data-dir", t.TempDir(), "-session-ttl-min", "500ms"}, 2, "-session-ttl-min 500ms: want 1s to 24h0m0s"},
		{"negative hold", []string{"-data-dir", t.TempDir(), "-rpc-hold-timeout", "-1s"}, 2, "-rpc-hold-timeout must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(c.args, io.Discard, &stderr, noEnv); code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("stderr lacks %q:\n%s", c.want, stderr.String())
			}
		})
	}
}

func noEnv(string) (string, bool) { return "", false }

// Every flag can come from RAFTKV_<FLAG>; a flag on the command line wins.
func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"RAFTKV_DATA_DIR": "", "RAFTKV_LOG_LEVEL": "loud"}
	get := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var stderr bytes.Buffer
	if code := run([]string{"-addr", "127.0.0.1:0"}, io.Discard, &stderr, get); code != 2 || !strings.Contains(stderr.String(), "-data-dir is required") {
		t.Fatalf("empty RAFTKV_DATA_DIR: exit %d: %s", code, stderr.String())
	}
	env["RAFTKV_DATA_DIR"] = t.TempDir()
	stderr.Reset()
	if code := run([]string{"-addr", "127.0.0.1:0"}, io.Discard, &stderr, get); code != 2 || !strings.Contains(stderr.String(), `unknown log level "loud"`) {
		t.Fatalf("RAFTKV_LOG_LEVEL=loud: exit %d: %s", code, stderr.String())
	}
	env["RAFTKV_MAX_VALUE_BYTES"] = "lots"
	stderr.Reset()
	if code := run([]string{"-log-level", "info"}, io.Discard, &stderr, get); code != 2 || !strings.Contains(stderr.String(), "RAFTKV_MAX_VALUE_BYTES") {
		t.Fatalf("a bad variable: exit %d: %s", code, stderr.String())
	}
}

func TestVersionAndGroupedHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-version"}, &stdout, &stderr, noEnv); code != 0 || !strings.HasPrefix(stdout.String(), "raftkvd ") {
		t.Fatalf("-version: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"-h"}, &stdout, &stderr, noEnv); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, want := range []string{"Cluster:", "-server-stabilization-time", "RAFTKV_DATA_DIR", "Raft timing"} {
		if !strings.Contains(stderr.String(), want) {
			t.Fatalf("-h lacks %q:\n%s", want, stderr.String())
		}
	}
	// Every flag is in a group.
	for _, name := range []string{"id", "addr", "advertise", "data-dir", "bootstrap", "join", "log-level", "log-format", "max-value-bytes", "session-ttl-min", "rpc-hold-timeout", "pprof",
		"heartbeat-timeout", "election-timeout", "leader-lease-timeout", "snapshot-threshold", "trailing-logs", "snapshot-interval", "version"} {
		if !strings.Contains(stderr.String(), "  -"+name+" ") && !strings.Contains(stderr.String(), "  -"+name+"\n") {
			t.Fatalf("-h does not list -%s", name)
		}
	}
}
