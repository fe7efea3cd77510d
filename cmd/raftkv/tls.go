package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// tlsCmd makes a development CA and certificates signed by it. They need
// no cluster: these commands only write files.
func (a *app) tlsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Create a CA and node or client certificates for TLS"}
	var dir string
	var days int
	cmd.PersistentFlags().StringVar(&dir, "dir", ".", "directory to write the files to")
	cmd.PersistentFlags().IntVar(&days, "days", 1825, "validity in days")

	ca := &cobra.Command{Use: "ca", Short: "Certificate authority"}
	caCreate := &cobra.Command{
		Use:   "create",
		Short: "Create a CA: raftkv-ca.pem and raftkv-ca-key.pem",
		Long: `Create a certificate authority that signs every node's and client's
certificate. Keep raftkv-ca-key.pem away from the nodes: they need only
raftkv-ca.pem (-tls-ca).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := tlsutil.CreateCA("raftkv CA", time.Duration(days)*24*time.Hour)
			if err != nil {
				return fail(err)
			}
			cert, key := filepath.Join(dir, "raftkv-ca.pem"), filepath.Join(dir, "raftkv-ca-key.pem")
			if err := p.WriteFiles(cert, key); err != nil {
				return fail(err)
			}
			fmt.Fprintf(a.stdout, "wrote %s and %s\n", cert, key)
			return nil
		},
	}
	ca.AddCommand(caCreate)

	var caFile, caKey, node string
	var hosts []string
	var client bool
	cert := &cobra.Command{Use: "cert", Short: "Node and client certificates"}
	certCreate := &cobra.Command{
		Use:   "create --node ID --host HOST [--host HOST...] | --client --node NAME",
		Short: "Create a node (or, with --client, a client) certificate signed by the CA",
		Long: `Create <ID>.pem and <ID>-key.pem, signed by the CA. A node's certificate
names every --host (IP or DNS name) peers and clients use to reach it (the
host of its -advertise address) and serves both ends of mutual TLS. A
--client certificate is for tools and applications under
-tls-verify-incoming.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pair, err := tlsutil.ReadPair(caFile, caKey)
			if err != nil {
				return fail(fmt.Errorf("read the CA (--ca, --ca-key): %w", err))
			}
			p, err := tlsutil.CreateCert(pair, tlsutil.CertOptions{Name: node, Hosts: hosts, Client: client, Validity: time.Duration(days) * 24 * time.Hour})
			if err != nil {
				return fail(err)
			}
			certPath, keyPath := filepath.Join(dir, node+".pem"), filepath.Join(dir, node+"-key.pem")
			if err := p.WriteFiles(certPath, keyPath); err != nil {
				return fail(err)
			}
			fmt.Fprintf(a.stdout, "wrote %s and %s\n", certPath, keyPath)
			return nil
		},
	}
	f := certCreate.Flags()
	f.StringVar(&caFile, "ca", "raftkv-ca.pem", "the CA's certificate")
	f.StringVar(&caKey, "ca-key", "raftkv-ca-key.pem", "the CA's key")
	f.StringVar(&node, "node", "", "node ID (or client name): the certificate's name and file names")
	f.StringSliceVar(&hosts, "host", nil, "IP or DNS name the node is reached at (repeat, or comma-separated)")
	f.BoolVar(&client, "client", false, "a client certificate instead of a node's")
	cert.AddCommand(certCreate)
	cmd.AddCommand(ca, cert)
	return cmd
}
