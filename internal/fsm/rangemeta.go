package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Range 0, the meta range, keeps a routing copy of every range's
// descriptor: what a node that does not hold a range knows of it (its
// span, generation and replicas). The truth about a range is its own
// descriptor, in its own state; its leader sends a copy here after every
// change, and the copy keeps the newest generation it was sent, so that
// copies sent out of order never go back. A backup does not carry the
// copy: a restore into another cluster must not bring that cluster's map.

// rangeMetaPrefix + range ID (8 bytes, big-endian) holds a descriptor.
var rangeMetaPrefix = []byte("M")

func rangeMetaKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), rangeMetaPrefix...), id)
}

// rangeMeta records d unless the copy has its generation or a newer one.
func (b *batchState) rangeMeta(w writer, idx uint64, d *rangemap.Descriptor) (*kv.Result, error) {
	old, err := b.get(rangeMetaKey(d.ID))
	if err != nil {
		return nil, err
	}
	if old != nil {
		if have, _, err := rangemap.DecodeDescriptor(old); err == nil && have.Generation >= d.Generation {
			return &kv.Result{Index: idx, OK: false}, nil
		}
	}
	return &kv.Result{Index: idx, OK: true}, w.Set(rangeMetaKey(d.ID), rangemap.AppendDescriptor(nil, *d))
}

// RangeMap returns range 0's routing copy of the range map, in ID order,
// as this replica has it.
func (f *FSM) RangeMap() ([]rangemap.Descriptor, error) {
	if f.ks.id != 0 {
		return nil, fmt.Errorf("fsm: range %d holds no range map (range 0 does)", f.ks.id)
	}
	var out []rangemap.Descriptor
	err := f.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = rangeMetaPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				d, _, err := rangemap.DecodeDescriptor(v)
				if err != nil {
					return fmt.Errorf("the routing copy of range %x: %w", it.Item().Key()[len(rangeMetaPrefix):], err)
				}
				out = append(out, d)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}
