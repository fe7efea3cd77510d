// Package loadgen is the load generator behind `raftkv bench`: N clients
// run a read/write/CAS mix against a Driver, closed-loop (each client sends
// its next request when the last one answers) or open-loop at a fixed rate,
// where latency is measured from the time each request was *meant* to be
// sent, so a stalled server cannot hide its queueing (no coordinated
// omission). Latencies go to HdrHistograms; results are ops/s, percentiles,
// errors by kind, a per-second series, and an HTML report.
//
// Drivers for other systems (etcd, in the bench/ module) implement Driver.
package loadgen
