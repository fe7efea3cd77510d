package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// flagGroups orders -h: each group's flags, explained, in this order.
var flagGroups = []struct {
	title string
	names []string
}{
	{"Node", []string{"id", "addr", "advertise", "data-dir", "raft-log-store", "disk-reserve"}},
	{"Cluster", []string{"bootstrap", "join", "non-voter", "server-stabilization-time", "recover"}},
	{"Raft timing (defaults suit most clusters; see docs/OPERATIONS.md)", []string{
		"heartbeat-timeout", "election-timeout", "leader-lease-timeout",
		"snapshot-threshold", "trailing-logs", "snapshot-interval", "raft-wal-segment-size"}},
	{"TLS (all of -tls-cert, -tls-key, -tls-ca, or none; see docs/SECURITY.md)", []string{"tls-cert", "tls-key", "tls-ca", "tls-verify-incoming"}},
	{"ACLs (see docs/SECURITY.md)", []string{"acl-default-policy", "acl-initial-management", "acl-token"}},
	{"API", []string{"max-value-bytes", "session-ttl-min", "rpc-hold-timeout", "pprof", "ui"}},
	{"Logs and version", []string{"log-level", "log-format", "version"}},
}

// envName is the environment variable that sets a flag: RAFTKV_DATA_DIR
// for -data-dir.
func envName(flagName string) string {
	return "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set: a flag wins over the variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := getenv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// usage prints the grouped help.
func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `raftkvd runs one raftkv node: raft and the HTTP API on one port.

  raftkvd -id n1 -addr 127.0.0.1:7001 -data-dir /var/lib/raftkv/n1 -bootstrap
  raftkvd -id n2 -addr 127.0.0.1:7002 -data-dir /var/lib/raftkv/n2 -join 127.0.0.1:7001

Every flag can also be set with an environment variable, RAFTKV_ and the
flag's name in capitals (RAFTKV_DATA_DIR for -data-dir); a flag wins.
`)
	for _, g := range flagGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			kind, help := flag.UnquoteUsage(f)
			line := "  -" + f.Name
			if kind != "" {
				line += " " + kind
			}
			fmt.Fprintf(w, "%s\n    \t%s", line, help)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		}
	}
}

func lookupEnv(k string) (string, bool) { return os.LookupEnv(k) }
