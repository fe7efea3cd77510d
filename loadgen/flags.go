package loadgen

import (
	"flag"
	"fmt"
	"time"
)

// Flags are the load options every tool built on loadgen takes, so that
// `raftkv bench` and the etcd driver (bench/cmd/kvbench) accept the same
// command line.
type Flags struct {
	cfg         Config
	mix         string
	consistency string
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.IntVar(&f.cfg.Clients, "clients", 16, "concurrent clients")
	fs.Float64Var(&f.cfg.Rate, "rate", 0, "open loop: total requests per second (0: closed loop)")
	fs.DurationVar(&f.cfg.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&f.cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before it")
	fs.IntVar(&f.cfg.Keys, "keys", 10000, "key space")
	fs.IntVar(&f.cfg.KeySize, "key-size", 16, "key size in bytes")
	fs.IntVar(&f.cfg.Prefixes, "key-prefixes", 0, "spread the keys over N prefixes bench/<p>/ (p = 0..N-1, zero-padded), which `raftkv range split` can cut at (0: all keys bench/<i>)")
	fs.IntVar(&f.cfg.ValueSize, "value-size", 256, "value size in bytes")
	fs.StringVar(&f.mix, "mix", "write=100", "operation mix, e.g. read=90,write=10 or read=80,write=10,cas=10")
	fs.StringVar(&f.consistency, "consistency", "linearizable", "reads: linearizable or stale")
}

// Config returns the parsed configuration and whether reads are stale.
func (f *Flags) Config() (Config, bool, error) {
	cfg := f.cfg
	var err error
	if cfg.Mix, err = ParseMix(f.mix); err != nil {
		return Config{}, false, err
	}
	if f.consistency != "linearizable" && f.consistency != "stale" {
		return Config{}, false, fmt.Errorf("consistency must be linearizable or stale, not %q", f.consistency)
	}
	return cfg, f.consistency == "stale", nil
}
