package ranges

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/internal/group"
)

// The raft gauges of every range this node holds, labelled by range (the
// unlabelled raftkv_raft_* gauges are range 0's, as before ranges).
var (
	rangeLeader = prometheus.NewDesc("raftkv_range_is_leader", "1 while this node leads the range's raft group, else 0.", []string{"range"}, nil)
	rangeTerm   = prometheus.NewDesc("raftkv_range_raft_term", "The raft term of the range's group on this node.", []string{"range"}, nil)
	rangeCommit = prometheus.NewDesc("raftkv_range_raft_commit_index", "The highest log index of the range this node knows to be committed.", []string{"range"}, nil)
	rangeApply  = prometheus.NewDesc("raftkv_range_raft_applied_index", "The highest log index of the range this node's replica has applied.", []string{"range"}, nil)
	rangeLag    = prometheus.NewDesc("raftkv_range_raft_last_contact_seconds", "Seconds since this node's replica of the range last heard from the range's leader (0 on the leader).", []string{"range"}, nil)
	rangeCount  = prometheus.NewDesc("raftkv_ranges", "Ranges this node holds a replica of (held), and replicas started that have not received their range's state yet (waiting).", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rangeLeader, rangeTerm, rangeCommit, rangeApply, rangeLag, rangeCount} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	groups := make(map[uint64]*group.Group, len(s.groups))
	for id, g := range s.groups {
		groups[id] = g
	}
	s.mu.Unlock()
	var held, waiting float64
	type entry struct {
		id    string
		stats map[string]string
		lead  bool
		apply uint64
		lag   float64
	}
	var entries []entry
	for id, g := range groups {
		if !g.FSM().Initialized() {
			waiting++
			continue
		}
		held++
		entries = append(entries, entry{id: strconv.FormatUint(id, 10), stats: g.Stats(), lead: g.IsLeader(), apply: g.AppliedIndex(), lag: g.LastContact().Seconds()})
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(rangeCount, held, "held")
	gauge(rangeCount, waiting, "waiting")
	for _, e := range entries {
		num := func(k string) float64 {
			v, _ := strconv.ParseFloat(e.stats[k], 64)
			return v
		}
		gauge(rangeLeader, map[bool]float64{true: 1}[e.lead], e.id)
		gauge(rangeTerm, num("term"), e.id)
		gauge(rangeCommit, num("commit_index"), e.id)
		gauge(rangeApply, float64(e.apply), e.id)
		gauge(rangeLag, e.lag, e.id)
	}
}
