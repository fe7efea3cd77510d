package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

func (a *app) rangeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "range",
		Short: "List the keyspace's ranges; split one",
		Long: `The keyspace is cut into ranges [START, END), each its own raft group
(docs/RANGES.md). A cluster starts with one range, covering every key;
splitting a range in two moves no data.`,
	}
	cmd.AddCommand(a.rangeLsCmd(), a.rangeSplitCmd(), a.rangeKeepWholeCmd())
	return cmd
}

func (a *app) rangeLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the ranges in key order, with their replicas, leader and load",
		Long: `List the ranges in key order: ID, first key, first key after the range
(∞: the end of the keyspace), generation (it grows at every split and
replica change), replicas (non-voters marked (nv)), leader, and the
leader's last measure of the range's keys, bytes and writes per second.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			rs, err := c.Ranges(cmd.Context())
			if err != nil {
				return err
			}
			if rs == nil {
				rs = []client.Range{} // -o json: [], as the node answers
			}
			return a.print(rs, func(w io.Writer) {
				if len(rs) == 0 {
					fmt.Fprintln(w, "no ranges listed: the node that answered runs the keyspace as one range")
					return
				}
				printRanges(w, rs)
			})
		}),
	}
}

func (a *app) rangeSplitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "split KEY",
		Short: "Split the range holding KEY in two at KEY",
		Long: `Split the range holding KEY in two: the left half keeps its ID and ends
at KEY, a new range starts at KEY. KEY must end with "/" (so that a prefix
listed with a separator stays in one range) and lie strictly inside its
range. Prints both halves.

A split whose outcome is unknown (the leader was lost while committing
it) is not retried: run raftkv range ls to see whether it applied.`,
		Example: `  raftkv range split users/m/`,
		Args:    cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return errors.New("split needs a KEY, where the range is cut (raftkv range ls shows the ranges)")
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			s, err := c.SplitRange(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(s, func(w io.Writer) {
				fmt.Fprintf(w, "split range %d at %s: range %d is new\n", s.Left.ID, showKey(s.Right.Start), s.Right.ID)
				printRanges(w, []client.Range{s.Left, s.Right})
			})
		}),
	}
}

func (a *app) rangeKeepWholeCmd() *cobra.Command {
	var release bool
	cmd := &cobra.Command{
		Use:   "keep-whole PREFIX",
		Short: "Keep PREFIX in one range: a split never cuts inside it",
		Long: `Keep PREFIX in one range from now on: a split never cuts inside it, so
its transactions and listings stay within one range. Refused if a range
boundary already falls inside PREFIX. --release lets it go.`,
		Example: `  raftkv range keep-whole service/web/`,
		Args:    cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return errors.New("keep-whole needs a PREFIX")
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.KeepWhole(cmd.Context(), args[0], !release); err != nil {
				return err
			}
			return a.print(true, func(w io.Writer) {
				if release {
					fmt.Fprintf(w, "%s may be split again\n", showKey(args[0]))
					return
				}
				fmt.Fprintf(w, "%s is kept in one range\n", showKey(args[0]))
			})
		}),
	}
	cmd.Flags().BoolVar(&release, "release", false, "let the prefix go: it may be split again")
	return cmd
}

// printRanges is the table of raftkv range ls.
func printRanges(w io.Writer, rs []client.Range) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART\tEND\tGEN\tREPLICAS\tLEADER\tKEYS\tBYTES\tWRITES/S")
	for _, r := range rs {
		end := "∞"
		if r.End != "" {
			end = showKey(r.End)
		}
		leader := r.Leader
		if leader == "" {
			leader = "-"
		}
		if r.FromMeta {
			// Known from the meta range's copy: this node has no replica
			// of it yet to measure.
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, showKey(r.Start), end, r.Generation,
				showReplicas(r.Replicas), "(not here)", "-", "-", "-")
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%.1f\n", r.ID, showKey(r.Start), end, r.Generation,
			showReplicas(r.Replicas), leader, r.Keys, showBytes(r.Bytes), r.WritesPerSec)
	}
	tw.Flush()
}

// showReplicas is "n1,n2,n3(nv)": a non-voter holds the range but does
// not count towards its quorum, which is what an operator looks for.
func showReplicas(rs []client.RangeReplica) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Node
		if !r.Voter {
			parts[i] += "(nv)"
		}
	}
	return strings.Join(parts, ",")
}

// showKey is a range bound as the table shows it: quoted when it is empty
// (the first key of the keyspace) or holds what would break the table's
// columns or hide in a terminal (spaces, control characters, a quote).
func showKey(k string) string {
	if k == "" || strings.ContainsFunc(k, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsGraphic(r) || r == '"' }) {
		return strconv.Quote(k)
	}
	return k
}

// showBytes is n in binary units, to one decimal: a table read by people
// (-o json has the exact count).
func showBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[i])
}
