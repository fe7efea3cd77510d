// Command kvbench drives etcd with raftkv's load generator (package
// loadgen, the same one behind `raftkv bench`), and prints comparison
// tables. It lives in its own module so that etcd's client stays out of
// raftkv's go.mod.
//
//	kvbench etcd --endpoints 127.0.0.1:2379,... --clients 64 --mix write=100 -o json
//	kvbench table results/ [raftkv etcd36]   # results/<system>-<workload>-<clients>[-<run>].json
//	kvbench consul --endpoints 127.0.0.1:8500,... --clients 64 --mix write=100 -o json
//	kvbench report out.html results/raftkv-write-64-1.json results/etcd-write-64-1.json
//	kvbench fill --system raftkv|etcd --endpoints ... --keys 1000000      # load keys for footprint
//	kvbench budget --entry FOLLOWER --leader LEADER --followers F1,F2   # one write's latency budget
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/raftkv/raftkv/loadgen"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kvbench etcd [flags] | kvbench table DIR | kvbench report OUT.html RESULT.json...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "etcd":
		err = runEtcd(os.Args[2:])
	case "budget":
		err = runBudget(os.Args[2:])
	case "fill":
		err = runFill(os.Args[2:])
	case "table":
		switch len(os.Args) {
		case 3:
			err = loadgen.WriteComparison(os.Stdout, os.Args[2], "raftkv", "etcd")
		case 5:
			err = loadgen.WriteComparison(os.Stdout, os.Args[2], os.Args[3], os.Args[4])
		default:
			err = fmt.Errorf("usage: kvbench table DIR [SYSTEM PEER]")
		}
	case "consul":
		err = runConsul(os.Args[2:])
	case "report":
		if len(os.Args) < 4 {
			err = fmt.Errorf("usage: kvbench report OUT.html RESULT.json...")
		} else {
			err = report(os.Args[2], os.Args[3:])
		}
	default:
		err = fmt.Errorf("unknown command %q (etcd, consul, table, report, budget, fill)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
}

// runLoad is what every driving command shares: the load flags of
// `raftkv bench`, --endpoints and -o, one run, its result printed.
// newDriver gets client i's endpoint and whether reads may be stale.
func runLoad(name, defaultEndpoint string, args []string, newDriver func(endpoint string, stale bool, clients int) (loadgen.Driver, error)) error {
	fs := flag.NewFlagSet("kvbench "+name, flag.ContinueOnError)
	var load loadgen.Flags
	load.Register(fs)
	endpoints := fs.String("endpoints", defaultEndpoint, "comma-separated node addresses")
	output := fs.String("o", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, stale, err := load.Config()
	if err != nil {
		return err
	}
	eps := strings.Split(*endpoints, ",")
	cfg.Progress = func(l string) { fmt.Fprintln(os.Stderr, l) }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, cfg, func(i int) (loadgen.Driver, error) {
		return newDriver(eps[i%len(eps)], stale, cfg.Clients) // pinned to one member, as raftkv's clients are
	})
	if err != nil {
		return err
	}
	if *output == "json" {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	fmt.Print(res.Summary())
	return nil
}

func runEtcd(args []string) error {
	return runLoad("etcd", "127.0.0.1:2379", args, func(ep string, stale bool, _ int) (loadgen.Driver, error) {
		// One client (gRPC connection) per bench client.
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		return &etcdDriver{c: c, stale: stale}, nil
	})
}

type etcdDriver struct {
	c     *clientv3.Client
	stale bool
}

func (d *etcdDriver) Read(ctx context.Context, key string) error {
	var opts []clientv3.OpOption
	if d.stale {
		opts = append(opts, clientv3.WithSerializable())
	}
	_, err := d.c.Get(ctx, key, opts...)
	return err
}

func (d *etcdDriver) Write(ctx context.Context, key string, value []byte) error {
	_, err := d.c.Put(ctx, key, string(value))
	return err
}

// CAS reads the key and writes it if its revision did not change: the same
// read-then-conditional-write as raftkv's ?cas=ModifyIndex.
func (d *etcdDriver) CAS(ctx context.Context, key string, value []byte) error {
	resp, err := d.c.Get(ctx, key)
	if err != nil {
		return err
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if len(resp.Kvs) == 1 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
	}
	_, err = d.c.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(value))).Commit()
	return err
}

func (d *etcdDriver) Close() error { return d.c.Close() }

// report writes one HTML report with a line per result file, named after
// the file, so that systems compare on the same plots.
func report(out string, files []string) error {
	var named []loadgen.Named
	for _, f := range files {
		r, err := loadgen.ReadResult(f)
		if err != nil {
			return err
		}
		named = append(named, loadgen.Named{Name: strings.TrimSuffix(filepath.Base(f), ".json"), Result: r})
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := loadgen.WriteHTML(w, "raftkv vs etcd", named...); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// runConsul drives Consul's KV API with raftkv's own HTTP driver, reads
// with ?consistent (Consul's linearizable mode; its default mode is not).
func runConsul(args []string) error {
	var hc *http.Client
	return runLoad("consul", "127.0.0.1:8500", args, func(ep string, stale bool, clients int) (loadgen.Driver, error) {
		if hc == nil {
			hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
		}
		d := loadgen.NewHTTPDriver(ep, stale, hc)
		if !stale {
			d = d.WithReadQuery("consistent")
		}
		return d, nil
	})
}
