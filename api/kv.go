package api

import "github.com/raftkv/raftkv/kv"

// DirEntry is Consul's JSON shape of a key (GET /v1/kv/..., and each
// result of a transaction). Value is base64 in JSON and null when empty.
type DirEntry struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	CreateIndex uint64
	ModifyIndex uint64
	Session     string
}

// FromEntry is e on the wire.
func FromEntry(e kv.Entry) DirEntry {
	d := DirEntry{Key: e.Key, Flags: e.Flags, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, LockIndex: e.LockIndex, Session: e.Session}
	if len(e.Value) > 0 {
		d.Value = e.Value
	}
	return d
}

// Entry is d as the store's entry.
func (d DirEntry) Entry() kv.Entry {
	return kv.Entry{Key: d.Key, Value: d.Value, Flags: d.Flags, CreateIndex: d.CreateIndex, ModifyIndex: d.ModifyIndex,
		LockIndex: d.LockIndex, Session: d.Session}
}

// TxnOp is one element of the array PUT /v1/txn takes. raftkv supports
// KV operations only; Consul's others (Node, Service, Check, Session) are
// refused.
type TxnOp struct {
	KV *KVTxnOp
}

// KVTxnOp is a transaction's operation on a key. Verb is Consul's: set,
// cas, lock, unlock, get, get-tree, check-index, check-session,
// check-not-exists, delete, delete-tree, delete-cas.
type KVTxnOp struct {
	Verb    string
	Key     string
	Value   []byte `json:",omitempty"`
	Flags   uint64 `json:",omitempty"`
	Index   uint64 `json:",omitempty"`
	Session string `json:",omitempty"`
}

// TxnResponse is a transaction's answer: its results (200), or why it was
// rolled back (409, Results null), one error per failing operation.
type TxnResponse struct {
	Results []TxnResult
	Errors  []TxnError
}

// TxnResult is the entry an operation read or wrote (writes without
// their value).
type TxnResult struct {
	KV DirEntry
}

// TxnError says why operation OpIndex could not apply.
type TxnError struct {
	OpIndex int
	What    string
}
