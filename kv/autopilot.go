package kv

import "time"

// AutopilotHealth is Consul's /v1/operator/autopilot/health report.
type AutopilotHealth struct {
	Healthy          bool
	FailureTolerance int
	Servers          []ServerHealth
}

// ServerHealth is one server of the report. LastContact is a duration
// string ("12ms"), as Consul writes it.
type ServerHealth struct {
	ID          string
	Name        string
	Address     string
	SerfStatus  string
	Version     string
	Leader      bool
	Voter       bool
	Healthy     bool
	LastContact string
	LastTerm    uint64
	LastIndex   uint64
	StableSince time.Time
	// CommitIndex and AppliedIndex are raftkv's additions: how far the
	// server knows the log committed, and how far its FSM has applied it.
	CommitIndex  uint64
	AppliedIndex uint64
}
