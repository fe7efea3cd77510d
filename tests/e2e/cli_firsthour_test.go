package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// What a newcomer meets in the first hour with raftkvd and the CLI.

// runCLI runs the raftkv binary with args and returns its exit code, its
// output (stdout and stderr) and how long it took.
func runCLI(t *testing.T, dir string, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(binary(t, "raftkv"), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), took
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), took
}

// A TLS setup that cannot work is told at once, with what to do, not
// retried for the whole --timeout: plaintext to a TLS node, no client
// certificate for a node with -tls-verify-incoming, another CA, a
// certificate that does not name the host dialled.
func TestCLITLSMistakesAreToldAtOnce(t *testing.T) {
	dir := t.TempDir()
	mk := func(args ...string) {
		t.Helper()
		if code, out, _ := runCLI(t, dir, args...); code != 0 {
			t.Fatalf("raftkv %s: %d %s", strings.Join(args, " "), code, out)
		}
	}
	mk("tls", "ca", "create")
	mk("tls", "cert", "create", "--node", "n1", "--host", "127.0.0.1")
	mk("tls", "cert", "create", "--node", "ops", "--client")
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	mk("tls", "ca", "create", "--dir", other)
	ca := filepath.Join(dir, "raftkv-ca.pem")
	c := proccluster.Start(t, 1, proccluster.Options{
		Root:      "../..",
		Build:     buildOpts(),
		NodeArgs:  [][]string{{"-tls-ca", ca, "-tls-cert", filepath.Join(dir, "n1.pem"), "-tls-key", filepath.Join(dir, "n1-key.pem"), "-tls-verify-incoming"}},
		ClientTLS: mustTLS(t, ca, filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem")),
	})
	addr := c.Procs[0].Addr
	port := addr[strings.LastIndex(addr, ":")+1:]
	client := []string{"--cert", "ops.pem", "--key", "ops-key.pem"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext", []string{"--endpoints", addr}, addr + " speaks TLS: use https:// and pass --cacert"},
		{"no client certificate", []string{"--endpoints", addr, "--cacert", ca}, addr + ": the node does not trust this client: pass --cert and --key"},
		{"another CA", append([]string{"--endpoints", addr, "--cacert", filepath.Join(other, "raftkv-ca.pem")}, client...), addr + ": the node's certificate is not signed by the CA given (--cacert)"},
		{"another name", append([]string{"--endpoints", "localhost:" + port, "--cacert", ca}, client...), "the node's certificate does not name localhost (it names 127.0.0.1)"},
	} {
		for _, op := range [][]string{{"get", "k"}, {"put", "k", "v"}} {
			args := append(append(append([]string{}, tc.args...), "--timeout", "30s"), op...)
			code, out, took := runCLI(t, dir, args...)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("%s: raftkv %s: exit %d, %q, want %q", tc.name, strings.Join(args, " "), code, out, tc.want)
			}
			if took > 10*time.Second {
				t.Fatalf("%s: raftkv %s gave up after %s (--timeout 30s)", tc.name, strings.Join(args, " "), took)
			}
		}
	}
	if code, out, _ := runCLI(t, dir, append([]string{"--endpoints", addr, "--cacert", ca, "put", "k", "v"}, client...)...); code != 0 {
		t.Fatalf("with the right certificates: %d %s", code, out)
	}
}

func mustTLS(t *testing.T, ca, cert, key string) *tls.Config {
	t.Helper()
	cfg, err := tlsConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With a majority lost, a call that gives up shows every node's answer
// (the survivor's "no leader" beside the others' refused connections), and
// members --stale shows the members as the survivor knows them.
func TestCLIWithAMajorityLost(t *testing.T) {
	c := startCluster(t, 3)
	k := cli{t: t, endpoints: c.Procs[0].Addr + "," + c.Procs[1].Addr + "," + c.Procs[2].Addr}
	k.ok("", "put", "app/k", "v")
	c.KillAtOnce(0, 1)
	for _, args := range [][]string{{"get", "app/k"}, {"put", "app/k", "w"}, {"members"}} {
		cmd := exec.Command(binary(t, "raftkv"), append([]string{"--endpoints", k.endpoints, "--timeout", "6s"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err == nil {
			t.Fatalf("raftkv %s without a majority: %s", strings.Join(args, " "), out.String())
		}
		msg := out.String()
		for i, want := range []string{"connection refused", "connection refused", "leader"} {
			re := regexp.MustCompile(regexp.QuoteMeta(c.Procs[i].Addr) + `: [^;\n]*(?i:` + regexp.QuoteMeta(want) + `)`)
			if !re.MatchString(msg) || !strings.Contains(msg, "no node could serve this") {
				t.Fatalf("raftkv %s: the error does not give %s's answer (%s):\n%s", strings.Join(args, " "), c.Procs[i].Addr, want, msg)
			}
		}
		if args[0] == "members" && !strings.Contains(msg, "raftkv members --stale") {
			t.Fatalf("members does not point to --stale:\n%s", msg)
		}
	}
	out := k.ok("", "members", "--stale")
	for i, p := range c.Procs {
		if !strings.Contains(out, "n"+strconv.Itoa(i+1)+"  "+p.Addr+"  ") {
			t.Fatalf("members --stale lacks %s:\n%s", p.Addr, out)
		}
	}
	if !strings.Contains(out, "knows no leader") {
		t.Fatalf("members --stale:\n%s", out)
	}
}

// raftkvd listens where the CLI looks by default, and both are where the
// README starts its first node.
func TestDefaultAddressesAgree(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`raftkvd -id n1 -addr (\S+)`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README starts no node n1")
	}
	first := string(m[1])
	t.Setenv("RAFTKV_ENDPOINTS", "") // unset: the default shows
	var out bytes.Buffer
	cmd := exec.Command(binary(t, "raftkvd"), "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("raftkvd -h: %v", err)
	}
	if !regexp.MustCompile(`-addr string\n.*\(default ` + regexp.QuoteMeta(first) + `\)`).MatchString(out.String()) {
		t.Fatalf("raftkvd's default -addr is not %s:\n%s", first, out.String())
	}
	_, help, _ := runCLI(t, t.TempDir(), "--help")
	if !strings.Contains(help, `(default "`+first+`")`) {
		t.Fatalf("raftkv's default endpoint is not %s:\n%s", first, help)
	}
}
