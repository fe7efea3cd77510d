package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/loadgen"
)

func (a *app) benchCmd() *cobra.Command {
	var (
		load           loadgen.Flags
		report, target string
		keep           bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency of the cluster",
		Long: `Drive a read/write/CAS mix with N clients and report ops/s and latency
percentiles (HdrHistogram). Closed loop by default; with --rate, open loop at
a fixed total rate, latency counted from each request's intended send time
(no coordinated omission). A progress line every second on stderr.

Its keys are under ` + benchPrefix + `; at the end every key under that prefix is
deleted, unless --keep is given.`,
		Args: cobra.NoArgs,
	}
	goFlags := flag.NewFlagSet("bench", flag.ContinueOnError)
	load.Register(goFlags)
	cmd.Flags().AddGoFlagSet(goFlags)
	cmd.Flags().StringVar(&target, "target", "all", "all: spread clients over the endpoints; leader: the leader only")
	cmd.Flags().StringVar(&report, "report", "", "write an HTML report with plots to this file")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the keys written (under "+benchPrefix+"); by default they are deleted at the end")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, stale, err := load.Config()
		if err != nil {
			return err
		}
		consistency := "linearizable"
		if stale {
			consistency = "stale"
		}
		if target != "all" && target != "leader" {
			return fmt.Errorf("--target must be all or leader")
		}
		endpoints := strings.Split(a.endpoints, ",")
		if target == "leader" {
			c, err := a.client()
			if err != nil {
				return err
			}
			leader, err := c.Leader(cmd.Context())
			if err != nil {
				return fail(fmt.Errorf("finding the leader: %w", err))
			}
			if leader == "" {
				return fail(fmt.Errorf("finding the leader: no leader known"))
			}
			endpoints = []string{leader}
		}
		cfg.Progress = func(line string) { fmt.Fprintln(a.stderr, line) }
		tr := &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}
		if a.cacert != "" || a.cert != "" || a.key != "" {
			t, err := client.TLSConfig(a.cacert, a.cert, a.key)
			if err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			tr.TLSClientConfig = t
			for i, e := range endpoints {
				if !strings.Contains(e, "://") {
					endpoints[i] = "https://" + e
				}
			}
		}
		hc := &http.Client{Transport: client.TokenTransport{Token: a.token, Next: tr}}
		res, err := loadgen.Run(cmd.Context(), cfg, func(i int) (loadgen.Driver, error) {
			return loadgen.NewHTTPDriver(endpoints[i%len(endpoints)], stale, hc), nil
		})
		if err != nil {
			return err // configuration: a usage error
		}
		if report != "" {
			if err := writeReport(report, res, target, consistency); err != nil {
				return fail(err)
			}
		}
		if err := a.print(res, func(w io.Writer) { fmt.Fprint(w, res.Summary()) }); err != nil {
			return fail(err)
		}
		if !keep {
			return fail(a.deleteBenchKeys(cmd.Context()))
		}
		return nil
	}
	return cmd
}

// benchPrefix is the prefix of every key bench writes.
var benchPrefix = func() string {
	k := loadgen.Key(0, 0)
	return k[:strings.LastIndex(k, "/")+1]
}()

// deleteBenchKeys removes what bench wrote, even after Ctrl-C ended the run.
func (a *app) deleteBenchKeys(ctx context.Context) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(a.timeout, 30*time.Second))
	defer cancel()
	if err := c.Delete(ctx, benchPrefix, client.Recurse()); err != nil {
		return fmt.Errorf("deleting the benchmark's keys (raftkv del --recurse %s does it): %w", benchPrefix, err)
	}
	fmt.Fprintf(a.stderr, "deleted the benchmark's keys (%s*); --keep keeps them\n", benchPrefix)
	return nil
}

func writeReport(path string, res *loadgen.Result, target, consistency string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	title := fmt.Sprintf("raftkv bench: %s, %s reads, target %s", res.Config.Mix, consistency, target)
	if err := loadgen.WriteHTML(f, title, loadgen.Named{Name: "raftkv", Result: res}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
