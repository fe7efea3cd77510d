package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/version"
)

// defaultEndpoint is where raftkvd listens by default (its -addr), and
// where the README's first node runs.
const defaultEndpoint = "127.0.0.1:7001"

// app holds what every command shares.
type app struct {
	endpoints string
	output    string
	timeout   time.Duration
	// TLS: the CA that signs the nodes, and this client's certificate.
	cacert, cert, key string
	// token is the ACL token every request carries.
	token  string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "raftkv",
		Short: "Command-line client for a raftkv cluster",
		Long: `raftkv talks to a raftkv cluster over its HTTP API.

Any node answers any request; give several with --endpoints (or
RAFTKV_ENDPOINTS) and raftkv fails over between them. Writes are retried
safely: each carries an Idempotency-Key, so the cluster applies it once.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("-o must be text or json, not %q", a.output)
			}
			return nil
		},
	}
	def := os.Getenv("RAFTKV_ENDPOINTS")
	if def == "" {
		def = defaultEndpoint
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.endpoints, "endpoints", def, "comma-separated node addresses, host:port or http(s)://host:port (env RAFTKV_ENDPOINTS; the default is raftkvd's default -addr)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to keep trying, failover included")
	pf.StringVar(&a.cacert, "cacert", os.Getenv("RAFTKV_CACERT"), "CA certificate that signs the nodes: talk TLS (env RAFTKV_CACERT)")
	pf.StringVar(&a.cert, "cert", os.Getenv("RAFTKV_CERT"), "client certificate, for nodes with -tls-verify-incoming (env RAFTKV_CERT)")
	pf.StringVar(&a.key, "key", os.Getenv("RAFTKV_KEY"), "client certificate's key (env RAFTKV_KEY)")
	pf.StringVar(&a.token, "token", os.Getenv("RAFTKV_TOKEN"), "ACL token (SecretID) every request carries (env RAFTKV_TOKEN)")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return err })
	root.AddCommand(a.getCmd(), a.putCmd(), a.delCmd(), a.lsCmd(), a.watchCmd(), a.txnCmd(),
		a.membersCmd(), a.joinCmd(), a.removeCmd(), a.leaderCmd(), a.transferCmd(), a.snapshotCmd(),
		a.sessionCmd(), a.lockCmd(), a.electCmd(), a.benchCmd(), a.versionCmd(), a.tlsCmd(), a.aclCmd(), a.rangeCmd())
	return root
}

func (a *app) client() (*client.Client, error) {
	cfg := client.Config{Endpoints: strings.Split(a.endpoints, ","), Timeout: a.timeout, Token: a.token}
	if a.cacert != "" || a.cert != "" || a.key != "" {
		t, err := client.TLSConfig(a.cacert, a.cert, a.key)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		cfg.TLS = t
	}
	return client.New(cfg)
}

// print writes v as JSON with -o json, or text otherwise.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.stdout)
	return nil
}

// runE adapts a command body: the client is built for it, and every error
// it returns is a failure of the operation (exit 1), not of usage.
func (a *app) runE(fn func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err // a bad --endpoints is a usage error
		}
		return fail(fn(cmd, c, args))
	}
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print raftkv's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.stdout, "raftkv", version.String())
			return nil
		},
	}
}
