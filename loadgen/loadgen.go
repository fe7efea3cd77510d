package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/raftkv/raftkv/kv"
)

// Driver performs operations on the system under test. One Driver per
// client; it need not be safe for concurrent use.
type Driver interface {
	Read(ctx context.Context, key string) error
	Write(ctx context.Context, key string, value []byte) error
	// CAS reads the key and writes it back conditionally on what it read.
	// Losing the race is not an error.
	CAS(ctx context.Context, key string, value []byte) error
	Close() error
}

// Mix is the share of each operation, in percent.
type Mix struct{ Read, Write, CAS int }

// ParseMix reads "read=90,write=10" (any order; missing kinds are 0; the
// shares must add up to 100).
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 0 {
			return Mix{}, fmt.Errorf("mix %q: want name=percent, like read=90,write=10", s)
		}
		switch name {
		case "read":
			m.Read = n
		case "write":
			m.Write = n
		case "cas":
			m.CAS = n
		default:
			return Mix{}, fmt.Errorf("mix %q: unknown operation %q (read, write, cas)", s, name)
		}
	}
	if m.Read+m.Write+m.CAS != 100 {
		return Mix{}, fmt.Errorf("mix %q adds up to %d%%, not 100%%", s, m.Read+m.Write+m.CAS)
	}
	return m, nil
}

func (m Mix) String() string { return fmt.Sprintf("read=%d,write=%d,cas=%d", m.Read, m.Write, m.CAS) }

// pick draws an operation from the mix.
func (m Mix) pick(r *rand.Rand) string {
	n := r.IntN(100)
	switch {
	case n < m.Read:
		return "read"
	case n < m.Read+m.Write:
		return "write"
	}
	return "cas"
}

// Config describes a run.
type Config struct {
	Clients   int
	Rate      float64 // total requests per second; 0 = closed loop
	Duration  time.Duration
	Warmup    time.Duration // run but not recorded
	Keys      int           // key space
	KeySize   int
	Prefixes  int // above 1: keys spread over bench/<p>/ (KeyIn), for range splits
	ValueSize int
	Mix       Mix
	Timeout   time.Duration // per request (default 10s)
	// Progress, if set, gets one line per second.
	Progress func(line string)
}

func (c *Config) check() error {
	switch {
	case c.Clients <= 0:
		return errors.New("clients must be positive")
	case c.Duration <= 0:
		return errors.New("duration must be positive")
	case c.Keys <= 0:
		return errors.New("keys must be positive")
	case c.KeySize < 8 || c.KeySize > kv.MaxKeyBytes:
		return fmt.Errorf("key size must be 8..%d bytes", kv.MaxKeyBytes)
	case c.ValueSize < 0:
		return errors.New("value size must not be negative")
	case c.Rate < 0:
		return errors.New("rate must not be negative")
	case c.Prefixes < 0:
		return errors.New("prefixes must not be negative")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	return nil
}

// Key returns the i-th key of the key space, padded to size bytes.
func Key(i, size int) string { return KeyIn(i, 0, size) }

// KeyIn returns the i-th key of the key space, padded to size bytes. With
// prefixes above 1, key i lies under bench/<p>/ with p = i mod prefixes,
// zero-padded to one width so that the prefixes sort in numeric order:
// bench/<p>/<i>, whose prefixes are path boundaries a range split can cut
// at. With 0 or 1 it is bench/<i>, the layout before prefixes.
func KeyIn(i, prefixes, size int) string {
	k := "bench/"
	if prefixes > 1 {
		width := len(strconv.Itoa(prefixes - 1))
		k += fmt.Sprintf("%0*d/", width, i%prefixes)
	}
	k += strconv.Itoa(i)
	if len(k) < size {
		k += strings.Repeat("x", size-len(k))
	}
	return k
}

// ErrorKind names an error for the error counts.
func ErrorKind(err error) string {
	var ne net.Error
	switch code := kv.Code(err); {
	case code != "internal":
		return code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne):
		return "network"
	}
	return "other"
}

// Run drives the load and returns the result. newDriver makes client i's
// driver.
func Run(ctx context.Context, cfg Config, newDriver func(client int) (Driver, error)) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	drivers := make([]Driver, cfg.Clients)
	for i := range drivers {
		d, err := newDriver(i)
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		drivers[i] = d
		defer d.Close()
	}
	rec := newRecorder()
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	start := time.Now()
	rec.measureFrom = start.Add(cfg.Warmup)
	end := rec.measureFrom.Add(cfg.Duration)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	op := func(d Driver, r *rand.Rand, intended time.Time) {
		key := KeyIn(r.IntN(cfg.Keys), cfg.Prefixes, cfg.KeySize)
		octx, ocancel := context.WithTimeout(ctx, cfg.Timeout)
		var err error
		switch cfg.Mix.pick(r) {
		case "read":
			err = d.Read(octx, key)
		case "write":
			err = d.Write(octx, key, value)
		default:
			err = d.CAS(octx, key, value)
		}
		ocancel()
		if ctx.Err() != nil && err != nil {
			return // cut off by the end of the run, not a failure
		}
		rec.record(intended, time.Now(), err)
	}

	var wg sync.WaitGroup
	var slots chan time.Time
	if cfg.Rate > 0 {
		// Open loop: one schedule shared by all clients; each request's
		// latency counts from its slot in the schedule.
		slots = make(chan time.Time, cfg.Clients*64)
		go schedule(ctx, start, cfg.Rate, slots)
	}
	for i, d := range drivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			if slots != nil {
				for t := range slots {
					op(d, r, t)
				}
				return
			}
			for ctx.Err() == nil {
				op(d, r, time.Now())
			}
		}()
	}
	stopProgress := rec.progress(cfg.Progress)
	wg.Wait()
	stopProgress()
	return rec.result(cfg), nil
}

// schedule sends the intended start time of each request at rate per
// second until ctx ends; it never skips a slot, so a slow server builds a
// backlog that shows in the latencies.
func schedule(ctx context.Context, start time.Time, rate float64, slots chan<- time.Time) {
	defer close(slots)
	for i := int64(0); ; i++ {
		t := slotTime(start, rate, i)
		if d := time.Until(t); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
			return
		case slots <- t:
		}
	}
}

// slotTime is when the i-th request of an open-loop run is meant to go out.
func slotTime(start time.Time, rate float64, i int64) time.Time {
	return start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
}

// newHist tracks latencies from 1µs to 1 minute with 3 significant digits.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}
