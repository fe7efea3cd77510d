package loadgen

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50, P90, P99, P999, Max, Mean float64
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

// Second is one second of the measured run.
type Second struct {
	At     int     // seconds since measuring began
	Ops    int64   // successful operations
	Errors int64   // failed ones
	P99    float64 // ms
}

// Point is one point of the latency distribution: Percentile% of requests
// took at most LatencyMs.
type Point struct {
	Percentile float64
	LatencyMs  float64
}

// Result is what a run measured.
type Result struct {
	Config struct {
		Clients   int
		Rate      float64
		Duration  string
		Keys      int
		KeySize   int
		Prefixes  int `json:",omitempty"`
		ValueSize int
		Mix       string
	}
	Ops          int64
	OpsPerSecond float64
	Latency      Percentiles
	Errors       map[string]int64
	Seconds      []Second
	Distribution []Point
}

// recorder collects latencies from all clients.
type recorder struct {
	mu          sync.Mutex
	measureFrom time.Time
	total       *hdrhistogram.Histogram
	second      *hdrhistogram.Histogram
	secondOps   int64
	secondErrs  int64
	seconds     []Second
	errors      map[string]int64
	elapsed     time.Duration
}

func newRecorder() *recorder {
	return &recorder{total: newHist(), second: newHist(), errors: map[string]int64{}}
}

func (r *recorder) record(intended, done time.Time, err error) {
	if done.Before(r.measureFrom) || intended.Before(r.measureFrom) {
		return // warm-up
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors[ErrorKind(err)]++
		r.secondErrs++
		return
	}
	us := max(done.Sub(intended).Microseconds(), 1)
	_ = r.total.RecordValue(us)
	_ = r.second.RecordValue(us)
	r.secondOps++
}

// roll closes the current second.
func (r *recorder) roll() Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Second{At: len(r.seconds) + 1, Ops: r.secondOps, Errors: r.secondErrs, P99: float64(r.second.ValueAtQuantile(99)) / 1000}
	r.seconds = append(r.seconds, s)
	r.second.Reset()
	r.secondOps, r.secondErrs = 0, 0
	return s
}

// progress rolls the per-second series once measuring has begun and
// reports each second; the returned func stops it and closes the last
// partial second.
func (r *recorder) progress(report func(string)) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if d := time.Until(r.measureFrom); d > 0 {
			select {
			case <-done:
				return
			case <-time.After(d):
			}
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				s := r.roll()
				if report != nil {
					report(fmt.Sprintf("%3ds  %8d ops/s  p99 %8.2f ms  errors %d", s.At, s.Ops, s.P99, s.Errors))
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		r.elapsed = max(time.Since(r.measureFrom), time.Millisecond)
	}
}

func (r *recorder) result(cfg Config) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{Ops: r.total.TotalCount(), Errors: r.errors, Seconds: r.seconds}
	res.Config.Clients, res.Config.Rate, res.Config.Duration = cfg.Clients, cfg.Rate, cfg.Duration.String()
	res.Config.Keys, res.Config.KeySize, res.Config.ValueSize, res.Config.Mix = cfg.Keys, cfg.KeySize, cfg.ValueSize, cfg.Mix.String()
	res.Config.Prefixes = cfg.Prefixes
	measured := min(r.elapsed, cfg.Duration)
	if measured <= 0 {
		measured = cfg.Duration
	}
	res.OpsPerSecond = float64(res.Ops) / measured.Seconds()
	res.Latency = percentiles(r.total)
	for _, q := range []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100} {
		res.Distribution = append(res.Distribution, Point{q, float64(r.total.ValueAtQuantile(q)) / 1000})
	}
	return res
}

// Summary is a human-readable block of the result.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d clients, %s, mix %s, %d keys, %d-byte values\n", r.Config.Clients, r.Config.Duration, r.Config.Mix, r.Config.Keys, r.Config.ValueSize)
	fmt.Fprintf(&b, "throughput  %.0f ops/s (%d ops)\n", r.OpsPerSecond, r.Ops)
	l := r.Latency
	fmt.Fprintf(&b, "latency ms  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	if len(r.Errors) == 0 {
		b.WriteString("errors      none\n")
	} else {
		kinds := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		b.WriteString("errors     ")
		for _, k := range kinds {
			fmt.Fprintf(&b, " %s=%d", k, r.Errors[k])
		}
		b.WriteString("\n")
	}
	return b.String()
}
