package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

func (a *app) membersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "members", Short: "List the cluster's servers", Args: cobra.NoArgs}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		cfg, err := c.Members(cmd.Context())
		if err != nil {
			return err
		}
		return a.print(cfg, func(w io.Writer) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tVOTER")
			for _, s := range cfg.Servers {
				role := "follower"
				if s.Leader {
					role = "leader"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", s.ID, s.Address, role, s.Voter)
			}
			tw.Flush()
		})
	})
	return cmd
}

func (a *app) joinCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "join ID ADDR", Short: "Add a voter to the cluster", Args: cobra.ExactArgs(2)}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		if err := c.Join(cmd.Context(), args[0], args[1]); err != nil {
			return err
		}
		return a.done()
	})
	return cmd
}

func (a *app) removeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "remove ID", Short: "Remove a server from the cluster", Args: cobra.ExactArgs(1)}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		if err := c.Remove(cmd.Context(), args[0]); err != nil {
			return err
		}
		return a.done()
	})
	return cmd
}

func (a *app) leaderCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "leader", Short: "Print the leader's address", Args: cobra.NoArgs}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		addr, err := c.Leader(cmd.Context())
		if err != nil {
			return err
		}
		if addr == "" {
			return fmt.Errorf("no leader known")
		}
		return a.print(map[string]string{"leader": addr}, func(w io.Writer) { fmt.Fprintln(w, addr) })
	})
	return cmd
}

func (a *app) transferCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Hand leadership to the voter ID (or to any voter)",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		id := ""
		if len(args) == 1 {
			id = args[0]
		}
		if err := c.TransferLeader(cmd.Context(), id); err != nil {
			return err
		}
		return a.done()
	})
	return cmd
}

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Save or restore a snapshot of the whole cluster"}
	save := &cobra.Command{Use: "save FILE", Short: "Save a snapshot to FILE", Args: cobra.ExactArgs(1)}
	save.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		var buf bytes.Buffer
		if err := c.SaveSnapshot(cmd.Context(), &buf); err != nil {
			return err
		}
		if err := os.WriteFile(args[0], buf.Bytes(), 0o600); err != nil {
			return err
		}
		return a.print(map[string]any{"file": args[0], "bytes": buf.Len()}, func(w io.Writer) {
			fmt.Fprintf(w, "saved %d bytes to %s\n", buf.Len(), args[0])
		})
	})
	restore := &cobra.Command{Use: "restore FILE", Short: "Replace the cluster's state with the snapshot in FILE", Args: cobra.ExactArgs(1)}
	restore.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		if err := c.RestoreSnapshot(cmd.Context(), b); err != nil {
			return err
		}
		return a.done()
	})
	cmd.AddCommand(save, restore)
	return cmd
}
