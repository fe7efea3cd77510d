package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// jsonEntry is how -o json shows a key (Consul's shape, Value in base64).
type jsonEntry struct {
	Key         string
	Value       []byte
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
}

func toJSON(e kv.Entry) jsonEntry {
	return jsonEntry{Key: e.Key, Value: e.Value, Flags: e.Flags, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}
}

type ok struct {
	OK bool `json:"ok"`
}

func (a *app) done() error {
	return a.print(ok{true}, func(w io.Writer) { fmt.Fprintln(w, "OK") })
}

func (a *app) getCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get [--stale] KEY",
		Short: "Print a key's value (linearizable unless --stale)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read from whichever node answers, without a freshness check")
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if args[0] == "" {
			return errors.New("get needs a KEY (raftkv ls lists the keys)")
		}
		return nil
	}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		var opts []client.ReadOption
		if stale {
			opts = append(opts, client.Stale())
		}
		e, _, err := c.Get(cmd.Context(), args[0], opts...)
		if err != nil {
			return err
		}
		return a.print(toJSON(e), func(w io.Writer) { fmt.Fprintf(w, "%s\n", e.Value) })
	})
	return cmd
}

func (a *app) putCmd() *cobra.Command {
	var cas int64
	var flags uint64
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE|-]",
		Short: "Write a key (the value from stdin if omitted or -)",
		Long: `Write a key. With - (or no VALUE) the value is read from stdin and
stored byte for byte, as consul kv put does: "echo shop | raftkv put app/name -"
stores "shop" and a newline; printf or echo -n store no newline.

Keys are relative, as in Consul: "app/name", not "/app/name".`,
		Args: cobra.RangeArgs(1, 2),
	}
	cmd.Flags().Int64Var(&cas, "cas", -1, "write only if the key's ModifyIndex is N (0: only if it does not exist)")
	cmd.Flags().Uint64Var(&flags, "flags", 0, "opaque uint64 stored with the key")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		var value []byte
		if len(args) == 2 && args[1] != "-" {
			value = []byte(args[1])
		} else {
			b, err := io.ReadAll(a.stdin)
			if err != nil {
				return fmt.Errorf("reading the value from stdin: %w", err)
			}
			value = b
			if bytes.HasSuffix(value, []byte("\n")) {
				// Stored as given, as consul kv put does; said, because
				// "echo v | raftkv put k -" surprises whoever reads k back.
				fmt.Fprintln(a.stderr, "raftkv: the value from stdin ends with a newline, stored with it (printf or echo -n leave it out)")
			}
		}
		opts := []client.WriteOption{}
		if cmd.Flags().Changed("flags") {
			opts = append(opts, client.WithFlags(flags))
		}
		if cas >= 0 {
			opts = append(opts, client.WithCAS(uint64(cas)))
		}
		if err := c.Put(cmd.Context(), args[0], value, opts...); err != nil {
			return casMessage(cmd.Context(), c, args[0], cas, err)
		}
		return a.done()
	})
	return cmd
}

// casMessage turns a lost compare-and-set into a sentence: whether the key
// is missing or has another ModifyIndex (the answer to a CAS says
// neither), read after the fact.
func casMessage(ctx context.Context, c *client.Client, key string, cas int64, err error) error {
	if !errors.Is(err, kv.ErrCASMismatch) {
		return err
	}
	e, _, gerr := c.Get(ctx, key)
	switch {
	case errors.Is(gerr, kv.ErrNotFound):
		return fmt.Errorf("compare-and-set failed: key %q does not exist (cas=%d)", key, cas)
	case gerr != nil:
		return fmt.Errorf("compare-and-set failed: %s", strings.TrimPrefix(err.Error(), kv.ErrCASMismatch.Error()+": "))
	case cas == 0:
		return fmt.Errorf("compare-and-set failed: key %q already exists, its ModifyIndex is %d (cas=0 writes only a key that does not exist)", key, e.ModifyIndex)
	}
	return fmt.Errorf("compare-and-set failed: key %q was modified: its ModifyIndex is now %d, not %d", key, e.ModifyIndex, cas)
}

func (a *app) delCmd() *cobra.Command {
	var recurse bool
	var cas int64
	cmd := &cobra.Command{
		Use:   "del [--recurse] [--cas N] KEY",
		Short: "Delete a key, or every key under a prefix with --recurse",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&recurse, "recurse", false, "delete every key starting with KEY")
	cmd.Flags().Int64Var(&cas, "cas", -1, "delete only if the key's ModifyIndex is N")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		var opts []client.WriteOption
		if recurse {
			opts = append(opts, client.Recurse())
		}
		if cas >= 0 {
			opts = append(opts, client.WithCAS(uint64(cas)))
		}
		if err := c.Delete(cmd.Context(), args[0], opts...); err != nil {
			return casMessage(cmd.Context(), c, args[0], cas, err)
		}
		return a.done()
	})
	return cmd
}

func (a *app) lsCmd() *cobra.Command {
	var keysOnly bool
	var sep string
	cmd := &cobra.Command{
		Use:   "ls [--keys] [--separator /] [PREFIX]",
		Short: "List the keys (and values) under a prefix",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.Flags().BoolVar(&keysOnly, "keys", false, "key names only")
	cmd.Flags().StringVar(&sep, "separator", "", "with --keys, roll keys up to the first separator after the prefix")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		prefix := ""
		if len(args) == 1 {
			prefix = args[0]
		}
		if keysOnly || sep != "" {
			keys, _, err := c.Keys(cmd.Context(), prefix, sep)
			if err != nil {
				return err
			}
			if keys == nil {
				keys = []string{}
			}
			return a.print(keys, func(w io.Writer) {
				for _, k := range keys {
					fmt.Fprintln(w, k)
				}
			})
		}
		entries, _, err := c.List(cmd.Context(), prefix)
		if err != nil {
			return err
		}
		out := make([]jsonEntry, len(entries))
		for i, e := range entries {
			out[i] = toJSON(e)
		}
		return a.print(out, func(w io.Writer) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\n", e.Key, printable(e.Value))
			}
			tw.Flush()
		})
	})
	return cmd
}

// printable shows a value on one line.
func printable(v []byte) string {
	s := string(v)
	if strings.ContainsAny(s, "\n\r\t") || !isText(s) {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func isText(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// watchEvent is one line of `raftkv watch` output.
type watchEvent struct {
	Index   uint64
	Key     string
	Value   []byte `json:",omitempty"`
	Deleted bool   `json:",omitempty"`
}

func (a *app) watchCmd() *cobra.Command {
	var prefix string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "watch KEY | --prefix P",
		Short: "Print every change to a key or under a prefix until Ctrl-C",
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == cmd.Flags().Changed("prefix") {
				return errors.New("watch takes either a KEY or --prefix P")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "watch every key starting with P")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Minute, "longest wait per blocking query")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		ctx := cmd.Context()
		emit := func(ev watchEvent) {
			_ = a.print(ev, func(w io.Writer) {
				if ev.Deleted {
					fmt.Fprintf(w, "%d\t%s\t(deleted)\n", ev.Index, ev.Key)
				} else {
					fmt.Fprintf(w, "%d\t%s\t%s\n", ev.Index, ev.Key, printable(ev.Value))
				}
			})
			if f, ok := a.stdout.(*os.File); ok {
				f.Sync()
			}
		}
		seen := map[string]uint64{} // key → ModifyIndex last printed
		var index uint64
		for first := true; ; first = false {
			var entries []kv.Entry
			var meta client.Meta
			var err error
			opts := []client.ReadOption{client.WaitIndex(index, wait)}
			if len(args) == 1 {
				var e kv.Entry
				e, meta, err = c.Get(ctx, args[0], opts...)
				if err == nil {
					entries = []kv.Entry{e}
				} else if errors.Is(err, kv.ErrNotFound) {
					err = nil
				}
			} else {
				entries, meta, err = c.List(ctx, prefix, opts...)
			}
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			if err != nil {
				return err
			}
			now := map[string]bool{}
			for _, e := range entries {
				now[e.Key] = true
				if seen[e.Key] != e.ModifyIndex {
					seen[e.Key] = e.ModifyIndex
					emit(watchEvent{Index: e.ModifyIndex, Key: e.Key, Value: e.Value})
				}
			}
			var gone []string
			for k := range seen {
				if !now[k] {
					gone = append(gone, k)
				}
			}
			sort.Strings(gone)
			for _, k := range gone {
				delete(seen, k)
				if !first {
					emit(watchEvent{Index: meta.Index, Key: k, Deleted: true})
				}
			}
			if meta.Index < index {
				index = 0 // the cluster's history was replaced (a restore): start over
			} else {
				index = meta.Index
			}
		}
	})
	return cmd
}

func (a *app) txnCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "txn FILE|-",
		Short: "Run a transaction (Consul's JSON format) atomically",
		Long: `Run a transaction from FILE (or stdin with -): a JSON array of
{"KV":{"Verb":"set","Key":"a","Value":"<base64>"}} operations, as Consul's
/v1/txn takes. Verbs: set, cas, get, get-tree, check-index, check-not-exists,
delete, delete-tree, delete-cas. If any check fails nothing is applied.`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read-only transactions: read from whichever node answers")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		var r io.Reader = a.stdin
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		var wire []struct{ KV *client.TxnOp }
		if err := json.NewDecoder(r).Decode(&wire); err != nil {
			return fmt.Errorf("%s: not a transaction: %w", args[0], err)
		}
		ops := make([]client.TxnOp, 0, len(wire))
		for i, w := range wire {
			if w.KV == nil {
				return fmt.Errorf("operation %d: only KV operations are supported", i)
			}
			ops = append(ops, *w.KV)
		}
		var opts []client.ReadOption
		if stale {
			opts = append(opts, client.Stale())
		}
		resp, err := c.Txn(cmd.Context(), ops, opts...)
		if errors.Is(err, kv.ErrTxnFailed) {
			_ = a.print(resp, func(w io.Writer) {
				for _, e := range resp.Errors {
					fmt.Fprintf(w, "op %d: %s\n", e.OpIndex, e.What)
				}
			})
			return fmt.Errorf("transaction rolled back: %w", err)
		}
		if err != nil {
			return err
		}
		out := make([]jsonEntry, len(resp.Results))
		for i, e := range resp.Results {
			out[i] = toJSON(e)
		}
		return a.print(map[string]any{"Results": out, "Errors": nil}, func(w io.Writer) {
			fmt.Fprintf(w, "OK (%d results)\n", len(resp.Results))
			for _, e := range resp.Results {
				fmt.Fprintf(w, "%s\t%s\tmodify=%d\n", e.Key, printable(e.Value), e.ModifyIndex)
			}
		})
	})
	return cmd
}
