package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// exitCode makes raftkv exit with a given status (lock passes its child's).
type exitCode int

func (e exitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

func (a *app) sessionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "List, create and destroy sessions"}
	ls := &cobra.Command{Use: "ls [NODE]", Short: "List sessions (of one node)", Args: cobra.MaximumNArgs(1)}
	ls.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		node := ""
		if len(args) == 1 {
			node = args[0]
		}
		list, _, err := c.Sessions(cmd.Context(), node)
		if err != nil {
			return err
		}
		return a.print(list, func(w io.Writer) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNODE\tTTL\tBEHAVIOR\tLOCK-DELAY\tCHECKS\tNAME")
			for _, s := range list {
				ttl := s.TTL
				if ttl == "" {
					ttl = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Node, ttl, s.Behavior, s.LockDelay, strings.Join(s.NodeChecks, ","), s.Name)
			}
			tw.Flush()
		})
	})
	var opts client.SessionOptions
	create := &cobra.Command{Use: "create", Short: "Create a session and print its ID", Args: cobra.NoArgs}
	create.Flags().StringVar(&opts.Name, "name", "", "session name")
	create.Flags().StringVar(&opts.Node, "node", "", "node the session belongs to (default: the node that answers)")
	create.Flags().DurationVar(&opts.TTL, "ttl", 0, "TTL (10s to 24h; 0: none)")
	create.Flags().DurationVar(&opts.LockDelay, "lock-delay", 0, "lock-delay after invalidation (default 15s)")
	create.Flags().StringVar(&opts.Behavior, "behavior", kv.BehaviorRelease, "what invalidation does to held keys: release or delete")
	create.Flags().BoolVar(&opts.NoChecks, "no-checks", false, "do not tie the session to its node's health")
	create.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		id, err := c.CreateSession(cmd.Context(), opts)
		if err != nil {
			return err
		}
		return a.print(map[string]string{"ID": id}, func(w io.Writer) { fmt.Fprintln(w, id) })
	})
	destroy := &cobra.Command{Use: "destroy ID", Short: "Invalidate a session (its locks are released or deleted)", Args: cobra.ExactArgs(1)}
	destroy.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		if err := c.DestroySession(cmd.Context(), args[0]); err != nil {
			return err
		}
		return a.done()
	})
	cmd.AddCommand(ls, create, destroy)
	return cmd
}

func (a *app) lockCmd() *cobra.Command {
	var limit int
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "lock PREFIX -- COMMAND [ARG...]",
		Short: "Run a command while holding a lock (or, with -n, a semaphore slot)",
		Long: `Run COMMAND while holding the lock PREFIX/.lock, as consul lock does (the
two share locks). With -n N, up to N commands run at once (a semaphore under
PREFIX). If the lock is lost, COMMAND gets SIGTERM, then SIGKILL min(5s,
TTL/4) later. When raftkv cannot renew the lock's session (cut off from the
cluster), it stops COMMAND early enough that the SIGKILL lands before the
cluster may release the lock: COMMAND (and what runs in its process group,
unless it reads a terminal) never runs while another holder's does.
COMMAND sees RAFTKV_LOCK_HELD=true and RAFTKV_LOCK_INDEX (the lock's fencing
token). raftkv exits with COMMAND's status (128+signal if killed).`,
		Args: cobra.MinimumNArgs(2),
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 1, "how many holders at once (a semaphore when above 1)")
	cmd.Flags().DurationVar(&ttl, "ttl", 15*time.Second, "TTL of the lock's session: a cut-off holder stops within it")
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		if limit <= 0 {
			return fmt.Errorf("%w: -n must be positive", kv.ErrInvalid)
		}
		prefix := strings.Trim(args[0], "/")
		child := args[1:]
		if dash := cmd.ArgsLenAtDash(); dash == 1 {
			child = args[dash:]
		}
		ctx := cmd.Context()
		grace := killGrace(ttl)
		opts := client.LockOptions{TTL: ttl, Margin: client.DefaultMargin(ttl) + grace}
		var lost <-chan struct{}
		var index uint64
		var release func() error
		if limit == 1 {
			opts.Flags = client.LockFlagValue
			l, err := c.Lock(ctx, path.Join(prefix, ".lock"), opts)
			if err != nil {
				return err
			}
			lost, index = l.Lost(), l.Index()
			release = func() error {
				if err := l.Unlock(context.Background()); err != nil {
					return err
				}
				return removeFreeLock(c, l.Key())
			}
		} else {
			s, err := c.Semaphore(ctx, prefix, limit, opts)
			if err != nil {
				return err
			}
			lost = s.Lost()
			release = func() error { return s.Release(context.Background()) }
		}
		code, runErr := a.runChild(ctx, child, lost, index, grace)
		if err := release(); err != nil {
			fmt.Fprintf(a.stderr, "raftkv: release: %v\n", err)
		}
		if runErr != nil {
			return runErr
		}
		if code != 0 {
			return exitCode(code)
		}
		return nil
	})
	return cmd
}

// removeFreeLock deletes a lock key nobody holds, as consul lock does when
// it is done; a key taken meanwhile is left alone (the CAS fails).
func removeFreeLock(c *client.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, _, err := c.Get(ctx, key)
	if errors.Is(err, kv.ErrNotFound) || err == nil && e.Session != "" {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, key, client.WithCAS(e.ModifyIndex)); err != nil && !errors.Is(err, kv.ErrCASMismatch) {
		return fmt.Errorf("remove lock key %q: %w", key, err)
	}
	return nil
}

// killGrace is how long a command has between SIGTERM and SIGKILL.
func killGrace(ttl time.Duration) time.Duration { return min(5*time.Second, ttl/4) }

// runChild runs args until it exits; it is stopped (SIGTERM, then SIGKILL
// after grace) when lost closes or ctx ends.
func (a *app) runChild(ctx context.Context, args []string, lost <-chan struct{}, index uint64, grace time.Duration) (int, error) {
	c := exec.Command(args[0], args[1:]...)
	c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
	c.Env = append(os.Environ(), "RAFTKV_LOCK_HELD=true", "CONSUL_LOCK_HELD=true", "RAFTKV_LOCK_INDEX="+strconv.FormatUint(index, 10))
	ownGroup(c, a.stdin)
	if err := c.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-lost:
		fmt.Fprintln(a.stderr, "raftkv: lock lost, stopping the command")
		err = stopChild(c, done, grace)
	case <-ctx.Done():
		err = stopChild(c, done, grace)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

func stopChild(c *exec.Cmd, done <-chan error, grace time.Duration) error {
	signalGroup(c, syscall.SIGTERM)
	select {
	case err := <-done:
		signalGroup(c, syscall.SIGKILL) // whatever it left behind
		return err
	case <-time.After(grace):
		signalGroup(c, syscall.SIGKILL)
		return <-done
	}
}

func (a *app) electCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "elect KEY [VALUE]",
		Short: "Campaign for leadership with VALUE, or watch who leads",
		Long: `With VALUE: campaign on KEY, print VALUE and the term (fencing token) once
elected, and lead until interrupted (then resign); exit 1 if leadership is
lost. Without VALUE: print the leader's value (or "no leader") now and on
every change, until interrupted.`,
		Args: cobra.RangeArgs(1, 2),
	}
	cmd.RunE = a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
		ctx := cmd.Context()
		e := c.Election(args[0])
		if len(args) == 1 {
			for o := range e.Observe(ctx) {
				if o.Leader {
					fmt.Fprintln(a.stdout, string(o.Value))
				} else {
					fmt.Fprintln(a.stdout, "no leader")
				}
			}
			return nil
		}
		if err := e.Campaign(ctx, []byte(args[1]), client.LockOptions{}); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "elected: %s (term %d)\n", args[1], e.Term())
		select {
		case <-e.Lost():
			return errors.New("leadership lost")
		case <-ctx.Done():
			return e.Resign(context.Background())
		}
	})
	return cmd
}
