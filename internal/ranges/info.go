package ranges

import (
	"context"
	"time"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// Info is what a node knows of one of its ranges.
type Info struct {
	rangemap.Descriptor
	Leader       string // node ID, "" if none known
	Keys, Bytes  int64
	WritesPerSec float64
}

// rateWindow is how far back the write rate looks.
const rateWindow = 10 * time.Second

// sample is a range's applied-entry count at a time.
type sample struct {
	at      time.Time
	entries uint64
}

// sampleRates records every range's applied-entry count each second, so
// that Info can give a recent rate.
func (s *Set) sampleRates(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			v, _ := s.view()
			s.mu.Lock()
			for _, l := range v {
				ss := append(s.samples[l.d.ID], sample{at: now, entries: l.g.FSM().Entries()})
				for len(ss) > 1 && now.Sub(ss[0].at) > rateWindow {
					ss = ss[1:]
				}
				s.samples[l.d.ID] = ss
			}
			s.mu.Unlock()
		}
	}
}

// Infos describes the ranges this node holds, in key order: descriptor,
// leader, size, and the write rate of the last ten seconds (every replica
// applies every write, so any node's rate is the range's).
func (s *Set) Infos(ctx context.Context) ([]Info, error) {
	v, _ := s.view()
	out := make([]Info, 0, len(v))
	for _, l := range v {
		keys, bytes, err := l.g.FSM().Size()
		if err != nil {
			return nil, err
		}
		_, leader := l.g.Leader()
		info := Info{Descriptor: l.d, Leader: leader, Keys: keys, Bytes: bytes}
		s.mu.Lock()
		if ss := s.samples[l.d.ID]; len(ss) > 1 {
			first, last := ss[0], ss[len(ss)-1]
			info.WritesPerSec = float64(last.entries-first.entries) / last.at.Sub(first.at).Seconds()
		}
		s.mu.Unlock()
		out = append(out, info)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return out, nil
}
