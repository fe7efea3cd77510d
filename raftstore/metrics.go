package raftstore

import (
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

type metrics struct {
	registry      *prometheus.Registry
	leaderChanges prometheus.Counter
	forwarded     *prometheus.CounterVec
	applyLatency  prometheus.Histogram
	failover      prometheus.Histogram
	readLatency   *prometheus.HistogramVec
	// readLatency's children, resolved once: they are observed on every read.
	confirmLatency, readIndexLatency, applyWaitLatency prometheus.Observer
}

func newMetrics(watchers func() int) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_leadership_changes_total",
			Help: "Times this node gained or lost leadership.",
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_forwarded_requests_total",
			Help: "Requests this node forwarded to the leader, by kind.",
		}, []string{"kind"}),
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
		m.leaderChanges, m.forwarded, m.applyLatency, m.failover, m.readLatency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_blocking_queries",
			Help: "Blocking queries currently waiting for a change on this node.",
		}, func() float64 { return float64(watchers()) }),
	)
	if sink := globalRaftSink(); sink != nil {
		m.registry.MustRegister(sink)
	}
	return m
}
