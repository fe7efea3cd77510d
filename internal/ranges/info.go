package ranges

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// Info is what a node knows of a range.
type Info struct {
	rangemap.Descriptor
	Leader       string // node ID, "" if none known
	Keys, Bytes  int64
	WritesPerSec float64
	Held         bool // this node holds a replica: the rest is its replica's
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

// Infos describes the ranges of the keyspace, in key order. Those this
// node holds: descriptor, leader, size, and the write rate of the last ten
// seconds (every replica applies every write, so any node's rate is the
// range's). The others (a node that just joined): as the meta range's
// routing copy has them.
func (s *Set) Infos(ctx context.Context) ([]Info, error) {
	v, _ := s.view()
	out := make([]Info, 0, len(v))
	held := map[uint64]bool{}
	for _, l := range v {
		held[l.d.ID] = true
	}
	copies, err := s.meta.FSM().RangeMap()
	if err != nil {
		return nil, err
	}
	for _, d := range copies {
		if !held[d.ID] {
			out = append(out, Info{Descriptor: d})
		}
	}
	for _, l := range v {
		keys, bytes, err := l.g.FSM().Size()
		if err != nil {
			return nil, err
		}
		_, leader := l.g.Leader()
		info := Info{Descriptor: l.d, Leader: leader, Keys: keys, Bytes: bytes, Held: true}
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
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Start, b.Start) })
	return out, nil
}
