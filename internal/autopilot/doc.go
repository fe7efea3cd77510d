// What lives here and why: see the package comment in autopilot.go. In
// short, raft-autopilot does the bookkeeping (health per server, when each
// became stable, failure tolerance) and the raft changes; this package
// decides whom to promote (never a read replica, never before the
// stabilization time, on an injectable clock) and translates the state
// into Consul's report. It runs only on the leader: its group (package
// group) starts it on gaining leadership and stops it on losing it,
// through the same hook as the group's features.
package autopilot
