package group

import (
	"strconv"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// raft and raft-boltdb report through hashicorp/go-metrics' process-global
// sink; it is created once and added to every node's registry, so with
// several nodes in one process (the example) /metrics shows the process's
// raft metrics. Node-specific metrics live in each node's registry.
var (
	raftSinkOnce sync.Once
	raftSink     prometheus.Collector
)

func globalRaftSink() prometheus.Collector {
	raftSinkOnce.Do(func() {
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Expiration: 10 * time.Minute,
			Registerer: prometheus.NewRegistry(), // registered per node below, not globally
		})
		if err != nil {
			return
		}
		conf := gometrics.DefaultConfig("raftkv")
		conf.EnableHostname = false
		conf.EnableRuntimeMetrics = false // the Go collector covers these
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			return
		}
		raftSink = sink
	})
	return raftSink
}

// metrics are a node's: its first group creates them, and the node's
// other groups (its ranges) add to them (Config.MetricsOf).
type metrics struct {
	registry      *prometheus.Registry
	watchers      sync.Map // *Group → its blocking queries' count (func() int)
	leaderChanges prometheus.Counter
	forwarded     *prometheus.CounterVec
	applyLatency  prometheus.Histogram
	// forwardLatency: a write forwarded to the leader, from sending to
	// its answer (the follower's share of a write's latency budget).
	forwardLatency prometheus.Histogram
	failover       prometheus.Histogram
	readLatency    *prometheus.HistogramVec
	// readLatency's children, resolved once: they are observed on every read.
	confirmLatency, readIndexLatency, applyWaitLatency prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_leadership_changes_total",
			Help: "Times this node gained or lost leadership (of any of its ranges).",
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_forwarded_requests_total",
			Help: "Requests this node forwarded to the leader, by kind.",
		}, []string{"kind"}),
		forwardLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_forward_seconds",
			Help:    "Writes forwarded to the leader: time from sending to the leader's answer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_apply_seconds",
			Help:    "Time from proposing a write on the leader to its FSM result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		failover: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_failover_seconds",
			Help: "After a change of leader, time from this node's last contact with the previous " +
				"leader to the first linearizable read it served under the new one.",
			Buckets: []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 10, 20},
		}),
		readLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftkv_linearize_seconds",
			Help: "Linearizable reads by phase: confirm (one leadership round, leader), " +
				"read_index (obtaining the read index), apply_wait (waiting for this node to apply it).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"phase"}),
	}
	m.confirmLatency = m.readLatency.WithLabelValues("confirm")
	m.readIndexLatency = m.readLatency.WithLabelValues("read_index")
	m.applyWaitLatency = m.readLatency.WithLabelValues("apply_wait")
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.leaderChanges, m.forwarded, m.applyLatency, m.forwardLatency, m.failover, m.readLatency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_blocking_queries",
			Help: "Blocking queries currently waiting for a change on this node.",
		}, func() float64 {
			n := 0
			m.watchers.Range(func(_, count any) bool { n += count.(func() int)(); return true })
			return float64(n)
		}),
	)
	if sink := globalRaftSink(); sink != nil {
		m.registry.MustRegister(sink)
	}
	return m
}

// raftGauges reports the node's raft position at scrape time: whether it
// leads, its term, last log, commit and applied indexes, time since it
// last heard from a leader, and (on the leader) since it last heard from
// each peer, labelled by peer; and whether its disk is full.
type raftGauges struct {
	s                                                     *Group
	isLeader, term, lastLog, commit, applied, lastContact *prometheus.Desc
	peerContact, diskFull                                 *prometheus.Desc
}

func newRaftGauges(s *Group) *raftGauges {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &raftGauges{
		s:           s,
		isLeader:    d("raftkv_is_leader", "1 while this node is the raft leader, else 0."),
		term:        d("raftkv_raft_term", "The raft term this node is in."),
		lastLog:     d("raftkv_raft_last_log_index", "Index of the last entry in this node's raft log."),
		commit:      d("raftkv_raft_commit_index", "The highest log index this node knows to be committed."),
		applied:     d("raftkv_raft_applied_index", "The highest log index this node's state machine has applied."),
		lastContact: d("raftkv_raft_last_contact_seconds", "Seconds since this node last heard from the leader (0 on the leader, -1 never)."),
		peerContact: d("raftkv_peer_last_contact_seconds", "On the leader: seconds since each peer last answered it.", "peer"),
		diskFull:    d("raftkv_disk_full", "1 while this node's disk is full (its reserve given back; the cluster refuses writes), else 0."),
	}
}

func (g *raftGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.isLeader, g.term, g.lastLog, g.commit, g.applied, g.lastContact, g.peerContact, g.diskFull} {
		ch <- d
	}
}

func (g *raftGauges) Collect(ch chan<- prometheus.Metric) {
	st := g.s.raft.Stats()
	num := func(k string) float64 {
		v, _ := strconv.ParseFloat(st[k], 64)
		return v
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	leading := g.s.IsLeader()
	gauge(g.isLeader, map[bool]float64{true: 1}[leading])
	gauge(g.term, num("term"))
	gauge(g.lastLog, num("last_log_index"))
	gauge(g.commit, num("commit_index"))
	gauge(g.applied, float64(g.s.AppliedIndex()))
	lc := g.s.sinceLeader().Seconds()
	if lc < 0 {
		lc = -1
	}
	gauge(g.lastContact, lc)
	gauge(g.diskFull, map[bool]float64{true: 1}[g.s.disk.Full()])
	if !leading {
		return
	}
	cf := g.s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	now := time.Now()
	for _, srv := range cf.Configuration().Servers {
		if id := string(srv.ID); id != g.s.id {
			if last := g.s.contacts.last(id); !last.IsZero() {
				gauge(g.peerContact, now.Sub(last).Seconds(), id)
			}
		}
	}
}
