package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/loadgen"
)

func (a *app) benchCmd() *cobra.Command {
	var (
		cfg         loadgen.Config
		mix, report string
		consistency string
		target      string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency of the cluster",
		Long: `Drive a read/write/CAS mix with N clients and report ops/s and latency
percentiles (HdrHistogram). Closed loop by default; with --rate, open loop at
a fixed total rate, latency counted from each request's intended send time
(no coordinated omission). A progress line every second on stderr.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Clients, "clients", 16, "concurrent clients")
	f.Float64Var(&cfg.Rate, "rate", 0, "open loop: total requests per second (0: closed loop)")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured duration")
	f.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before it")
	f.IntVar(&cfg.Keys, "keys", 10000, "key space")
	f.IntVar(&cfg.KeySize, "key-size", 16, "key size in bytes")
	f.IntVar(&cfg.ValueSize, "value-size", 256, "value size in bytes")
	f.StringVar(&mix, "mix", "write=100", "operation mix, e.g. read=90,write=10 or read=80,write=10,cas=10")
	f.StringVar(&consistency, "consistency", "linearizable", "reads: linearizable or stale")
	f.StringVar(&target, "target", "all", "all: spread clients over the endpoints; leader: the leader only")
	f.StringVar(&report, "report", "", "write an HTML report with plots to this file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var err error
		if cfg.Mix, err = loadgen.ParseMix(mix); err != nil {
			return err
		}
		if consistency != "linearizable" && consistency != "stale" {
			return fmt.Errorf("--consistency must be linearizable or stale")
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
			if err != nil || leader == "" {
				return fail(fmt.Errorf("finding the leader: %v", err))
			}
			endpoints = []string{leader}
		}
		cfg.Progress = func(line string) { fmt.Fprintln(a.stderr, line) }
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}}
		res, err := loadgen.Run(cmd.Context(), cfg, func(i int) (loadgen.Driver, error) {
			return loadgen.NewHTTPDriver(endpoints[i%len(endpoints)], consistency == "stale", hc), nil
		})
		if err != nil {
			return err // configuration: a usage error
		}
		if report != "" {
			if err := writeReport(report, res, target, consistency); err != nil {
				return fail(err)
			}
		}
		return fail(a.print(res, func(w io.Writer) { fmt.Fprint(w, res.Summary()) }))
	}
	return cmd
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
