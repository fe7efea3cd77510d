package e2e

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	rkclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// A 3-node cluster over mutual TLS with -tls-verify-incoming, its
// certificates made by raftkv tls: the CLI and consul/api (configured in
// code and through CONSUL_* variables) work with a client certificate and
// fail without one; a node certificate rotated on disk is served to new
// connections without a restart.
func TestTLSCluster(t *testing.T) {
	dir := t.TempDir()
	bin := binary(t, "raftkv")
	mk := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	mk("tls", "ca", "create")
	for _, n := range []string{"n1", "n2", "n3"} {
		mk("tls", "cert", "create", "--node", n, "--host", "127.0.0.1")
	}
	mk("tls", "cert", "create", "--node", "ops", "--client")
	ca := filepath.Join(dir, "raftkv-ca.pem")
	nodeArgs := func(n string) []string {
		return []string{"-tls-ca", ca, "-tls-cert", filepath.Join(dir, n+".pem"), "-tls-key", filepath.Join(dir, n+"-key.pem"), "-tls-verify-incoming"}
	}
	clientTLS, err := tlsConfig(ca, filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c := proccluster.Start(t, 3, proccluster.Options{
		Root:      "../..",
		Build:     buildOpts(),
		NodeArgs:  [][]string{nodeArgs("n1"), nodeArgs("n2"), nodeArgs("n3")},
		ClientTLS: clientTLS,
	})
	eps := c.Procs[0].Addr + "," + c.Procs[1].Addr + "," + c.Procs[2].Addr
	tlsArgs := []string{"--endpoints", eps, "--timeout", "10s", "--cacert", ca, "--cert", filepath.Join(dir, "ops.pem"), "--key", filepath.Join(dir, "ops-key.pem")}
	cliRun := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return out.String(), code
	}
	if out, code := cliRun(append(tlsArgs, "put", "secure/k", "v")...); code != 0 {
		t.Fatalf("put over TLS: %d %s", code, out)
	}
	if out, code := cliRun(append(tlsArgs, "get", "secure/k")...); code != 0 || out != "v\n" {
		t.Fatalf("get over TLS: %d %q", code, out)
	}
	if out, code := cliRun("--endpoints", eps, "--timeout", "5s", "--cacert", ca, "get", "secure/k"); code == 0 {
		t.Fatalf("a client without a certificate was served: %q", out)
	}
	if out, code := cliRun("--endpoints", eps, "--timeout", "5s", "get", "secure/k"); code == 0 {
		t.Fatalf("a plaintext client was served: %q", out)
	}

	// consul/api, in code and through its environment variables.
	cc, err := consul.NewClient(&consul.Config{Address: c.Procs[1].Addr, Scheme: "https", TLSConfig: consul.TLSConfig{
		CAFile: ca, CertFile: filepath.Join(dir, "ops.pem"), KeyFile: filepath.Join(dir, "ops-key.pem")}})
	if err != nil {
		t.Fatal(err)
	}
	if p, _, err := cc.KV().Get("secure/k", nil); err != nil || p == nil || string(p.Value) != "v" {
		t.Fatalf("consul/api over TLS: %+v %v", p, err)
	}
	t.Setenv("CONSUL_HTTP_ADDR", c.Procs[2].Addr)
	t.Setenv("CONSUL_HTTP_SSL", "true")
	t.Setenv("CONSUL_CACERT", ca)
	t.Setenv("CONSUL_CLIENT_CERT", filepath.Join(dir, "ops.pem"))
	t.Setenv("CONSUL_CLIENT_KEY", filepath.Join(dir, "ops-key.pem"))
	ce, err := consul.NewClient(consul.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ce.KV().Put(&consul.KVPair{Key: "secure/env", Value: []byte("yes")}, nil); err != nil {
		t.Fatalf("consul/api from CONSUL_* variables: %v", err)
	}

	// Rotation: n1's certificate replaced on disk; new connections get it.
	served := func() string {
		conn, err := tls.Dial("tcp", c.Procs[0].Addr, clientTLS.Clone())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	os.Remove(filepath.Join(dir, "n1.pem"))
	os.Remove(filepath.Join(dir, "n1-key.pem"))
	mk("tls", "cert", "create", "--node", "n1", "--host", "127.0.0.1")
	testsupport.WaitFor(t, 10*time.Second, "the rotated certificate served", func() error {
		if served() == before {
			return os.ErrExist
		}
		return nil
	})
	if out, code := cliRun(append(tlsArgs, "get", "secure/env")...); code != 0 || out != "yes\n" {
		t.Fatalf("after rotation: %d %q", code, out)
	}
}

func tlsConfig(ca, cert, key string) (*tls.Config, error) { return rkclient.TLSConfig(ca, cert, key) }
