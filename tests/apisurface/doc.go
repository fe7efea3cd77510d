// Package apisurface tests the shape of raftkv's public Go API, not its
// behaviour: that no exported signature of a public package (raftstore,
// client, kv, api, tlscerts) names a type of an internal package, that
// raftstore re-exports every sentinel error of kv, and that the example
// builds as a copy outside this module, as an embedder's program would.
package apisurface
