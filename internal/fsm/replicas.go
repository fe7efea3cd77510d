package fsm

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/kv"
)

// Read replicas: servers that joined as non-voters for good. The mark is
// replicated state (so every future leader's autopilot knows not to promote
// them) and, like every Badger key, part of snapshots.
var replicaPrefix = []byte("r")

// markReplica applies a replica mark (nil: the zero mark).
func markReplica(w writer, idx uint64, m *ReplicaMark) (*kv.Result, error) {
	if m == nil {
		m = &ReplicaMark{}
	}
	key := prefixed(replicaPrefix, m.Server)
	var err error
	if m.ReadReplica {
		err = w.Set(key, []byte{1})
	} else {
		err = w.Delete(key)
	}
	if err != nil {
		return nil, err
	}
	return &kv.Result{Index: idx, OK: true}, nil
}

// ReadReplica reports whether server id is marked a read replica.
func (f *FSM) ReadReplica(id string) (bool, error) {
	found := false
	err := f.view(func(txn *badger.Txn) error {
		_, err := txn.Get(prefixed(replicaPrefix, id))
		switch err {
		case nil:
			found = true
		case badger.ErrKeyNotFound:
		default:
			return err
		}
		return nil
	})
	return found, err
}
