package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// runFill writes keys fill/00000000 … fill/<n-1> once each, in
// transactions of --batch puts, from --clients writers: the way to give a
// cluster a million keys for measuring its memory and disk.
//
//	kvbench fill --system raftkv --endpoints 127.0.0.1:7001 --keys 1000000
//	kvbench fill --system etcd --endpoints 127.0.0.1:2379 --keys 1000000
func runFill(args []string) error {
	fs := flag.NewFlagSet("kvbench fill", flag.ContinueOnError)
	system := fs.String("system", "raftkv", "raftkv or etcd")
	endpoints := fs.String("endpoints", "", "comma-separated node addresses")
	keys := fs.Int("keys", 1_000_000, "how many keys")
	batch := fs.Int("batch", 64, "puts per transaction")
	clients := fs.Int("clients", 16, "concurrent writers")
	valueSize := fs.Int("value-size", 256, "value size in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	eps := strings.Split(*endpoints, ",")
	value := bytes.Repeat([]byte("v"), *valueSize)
	var put func(ctx context.Context, client int, keys []string) error
	switch *system {
	case "raftkv":
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
		b64 := base64.StdEncoding.EncodeToString(value)
		put = func(ctx context.Context, client int, keys []string) error {
			type kvOp struct{ Verb, Key, Value string }
			ops := make([]struct{ KV kvOp }, len(keys))
			for i, k := range keys {
				ops[i].KV = kvOp{"set", k, b64}
			}
			body, _ := json.Marshal(ops)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+eps[client%len(eps)]+"/v1/txn", bytes.NewReader(body))
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("txn: %d %s", resp.StatusCode, b)
			}
			return nil
		}
	case "etcd":
		cs := make([]*clientv3.Client, *clients)
		for i := range cs {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{eps[i%len(eps)]}, DialTimeout: 5 * time.Second})
			if err != nil {
				return err
			}
			defer c.Close()
			cs[i] = c
		}
		put = func(ctx context.Context, client int, keys []string) error {
			ops := make([]clientv3.Op, len(keys))
			for i, k := range keys {
				ops[i] = clientv3.OpPut(k, string(value))
			}
			_, err := cs[client].Txn(ctx).Then(ops...).Commit()
			return err
		}
	default:
		return fmt.Errorf("--system must be raftkv or etcd")
	}
	start := time.Now()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *clients)
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(int64(*batch))) - *batch
				if from >= *keys {
					return
				}
				to := min(from+*batch, *keys)
				ks := make([]string, 0, to-from)
				for i := from; i < to; i++ {
					ks = append(ks, fmt.Sprintf("fill/%08d", i))
				}
				var err error
				for attempt := 0; attempt < 5; attempt++ { // a put is idempotent: retry
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					err = put(ctx, c, ks)
					cancel()
					if err == nil {
						break
					}
					time.Sleep(time.Second)
				}
				if err != nil {
					errs <- err
					return
				}
				if n := done.Add(int64(len(ks))); n%100_000 < int64(len(ks)) {
					fmt.Printf("%d keys, %.0f/s\n", n, float64(n)/time.Since(start).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Printf("%d keys in %s\n", done.Load(), time.Since(start).Round(time.Millisecond))
	return nil
}
