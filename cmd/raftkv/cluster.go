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
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's servers and their health",
		Long: `List the servers with the leader's view of their health: state, voter,
healthy (reachable, in the leader's term, close behind its log), time since
each last heard from the leader, and lag in log entries. Joined servers are
non-voters until they have been healthy for the stabilization time.`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		h, err := c.AutopilotHealth(cmd.Context())
		if err != nil {
			return err
		}
		var leaderIndex uint64
		for _, s := range h.Servers {
			if s.Leader {
				leaderIndex = s.LastIndex
			}
		}
		return a.print(h, func(w io.Writer) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tADDRESS\tSTATE\tVOTER\tHEALTHY\tLAST-CONTACT\tLAG")
			for _, s := range h.Servers {
				state := "follower"
				switch {
				case s.Leader:
					state = "leader"
				case s.SerfStatus == "failed":
					state = "unreachable"
				case !s.Voter:
					state = "non-voter"
				}
				lag := "-"
				if s.LastIndex > 0 && leaderIndex >= s.LastIndex {
					lag = fmt.Sprint(leaderIndex - s.LastIndex)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\n", s.ID, s.Address, state, s.Voter, s.Healthy, s.LastContact, lag)
			}
			tw.Flush()
			fmt.Fprintf(w, "healthy: %v, failure tolerance: %d\n", h.Healthy, h.FailureTolerance)
		})
	})
	return cmd
}

func (a *app) joinCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "join ID ADDR", Short: "Add a server (a voter once it has been healthy for the stabilization time)", Args: cobra.ExactArgs(2)}
	var nonVoter bool
	cmd.Flags().BoolVar(&nonVoter, "non-voter", false, "keep it a non-voter for good (a read replica)")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		join := c.Join
		if nonVoter {
			join = c.JoinReadReplica
		}
		if err := join(cmd.Context(), args[0], args[1]); err != nil {
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
