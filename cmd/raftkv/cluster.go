package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

func (a *app) membersCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "members [--stale]",
		Short: "List the cluster's servers and their health",
		Long: `List the servers with the leader's view of their health: state, voter,
healthy (reachable, in the leader's term, close behind its log), time since
each last heard from the leader, and lag in log entries. Joined servers are
non-voters until they have been healthy for the stabilization time.

With --stale, list the servers as the first node that answers knows them
(its copy of the raft configuration), without a leader: what there is to
see when a majority is lost.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "the raft configuration as one node knows it; needs no leader")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		if stale {
			return a.staleMembers(cmd, c)
		}
		h, err := c.AutopilotHealth(cmd.Context())
		if err != nil {
			if errors.Is(err, client.ErrPermanent) {
				return err
			}
			return fmt.Errorf("%w\n(raftkv members --stale lists the servers as a node knows them, without a leader)", err)
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

// staleMembers prints the raft configuration of the first node that
// answers, leader or not.
func (a *app) staleMembers(cmd *cobra.Command, c *client.Client) error {
	cfg, err := c.Members(cmd.Context(), client.Stale())
	if err != nil {
		return err
	}
	return a.print(cfg, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tADDRESS\tSTATE\tVOTER")
		leader := false
		for _, s := range cfg.Servers {
			state := "follower"
			switch {
			case s.Leader:
				state, leader = "leader", true
			case !s.Voter:
				state = "non-voter"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", s.ID, s.Address, state, s.Voter)
		}
		tw.Flush()
		note := "that node knows no leader"
		if leader {
			note = "the leader shown is the one that node follows"
		}
		fmt.Fprintf(w, "stale: the raft configuration as one node knows it (index %d), not checked with a leader; %s\n", cfg.Index, note)
	})
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
