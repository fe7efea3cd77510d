package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Command encoding, version 1. All integers are varints (encoding/binary):
//
//	command := version:byte(1) time:varint(unix ns) idemKey:bytes nops:uvarint op*
//	op      := verb:byte key:bytes value:bytes flags:uvarint index:uvarint
//	bytes   := len:uvarint data
//
// The encoding is deterministic (same Command, same bytes) and compact; a new
// field means a new version byte, and old versions stay decodable forever
// because they live in raft logs and snapshots.
const commandV1 = 1

var errCorrupt = errors.New("corrupt command")

// EncodeCommand serialises c for the raft log.
func EncodeCommand(c *kv.Command) []byte {
	size := 1 + binary.MaxVarintLen64*2 + len(c.IdempotencyKey)
	for _, op := range c.Ops {
		size += 1 + binary.MaxVarintLen64*4 + len(op.Key) + len(op.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, commandV1)
	var t int64
	if !c.Time.IsZero() {
		t = c.Time.UnixNano()
	}
	b = binary.AppendVarint(b, t)
	b = appendBytes(b, []byte(c.IdempotencyKey))
	b = binary.AppendUvarint(b, uint64(len(c.Ops)))
	for _, op := range c.Ops {
		b = append(b, byte(op.Verb))
		b = appendBytes(b, []byte(op.Key))
		b = appendBytes(b, op.Value)
		b = binary.AppendUvarint(b, op.Flags)
		b = binary.AppendUvarint(b, op.Index)
	}
	return b
}

// DecodeCommand parses what EncodeCommand produced. It never panics.
func DecodeCommand(b []byte) (*kv.Command, error) {
	d := decoder{b: b}
	if v := d.byte(); v != commandV1 {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: unknown version %d", errCorrupt, v)
	}
	c := &kv.Command{}
	if t := d.varint(); t != 0 {
		c.Time = time.Unix(0, t)
	}
	c.IdempotencyKey = string(d.bytes())
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) { // each op takes at least one byte
		return nil, fmt.Errorf("%w: %d ops in %d bytes", errCorrupt, n, len(d.b))
	}
	if n > 0 {
		c.Ops = make([]kv.Op, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		op := kv.Op{Verb: kv.Verb(d.byte())}
		op.Key = string(d.bytes())
		if v := d.bytes(); len(v) > 0 {
			op.Value = append([]byte(nil), v...)
		}
		op.Flags = d.uvarint()
		op.Index = d.uvarint()
		c.Ops = append(c.Ops, op)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return c, nil
}

// record is the stored form of one key: version:byte(1) flags create modify value...
const recordV1 = 1

func encodeRecord(e *kv.Entry) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(e.Value))
	b = append(b, recordV1)
	b = binary.AppendUvarint(b, e.Flags)
	b = binary.AppendUvarint(b, e.CreateIndex)
	b = binary.AppendUvarint(b, e.ModifyIndex)
	return append(b, e.Value...)
}

// decodeRecord fills e from b. The value is copied: Badger's buffers are only
// valid inside their transaction.
func decodeRecord(b []byte, e *kv.Entry) error {
	d := decoder{b: b}
	if v := d.byte(); v != recordV1 && d.err == nil {
		return fmt.Errorf("fsm: stored record has unknown version %d", v)
	}
	e.Flags = d.uvarint()
	e.CreateIndex = d.uvarint()
	e.ModifyIndex = d.uvarint()
	if d.err != nil {
		return fmt.Errorf("fsm: stored record: %w", d.err)
	}
	e.Value = nil
	if len(d.b) > 0 {
		e.Value = append([]byte(nil), d.b...)
	}
	return nil
}

func appendBytes(b, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// decoder reads varint-framed fields; the first error sticks and later reads
// return zero values, so callers check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// Stored result of an idempotent command, version 1:
//
//	version:byte(1) index:uvarint ok:byte nentries:uvarint entry* nerrors:uvarint error*
//	entry := key:bytes value:bytes flags:uvarint create:uvarint modify:uvarint
//	error := opIndex:uvarint what:bytes
const resultV1 = 1

func encodeResult(r *kv.Result) []byte {
	b := []byte{resultV1}
	b = binary.AppendUvarint(b, r.Index)
	if r.OK {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Entries)))
	for _, e := range r.Entries {
		b = appendBytes(b, []byte(e.Key))
		b = appendBytes(b, e.Value)
		b = binary.AppendUvarint(b, e.Flags)
		b = binary.AppendUvarint(b, e.CreateIndex)
		b = binary.AppendUvarint(b, e.ModifyIndex)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Errors)))
	for _, e := range r.Errors {
		b = binary.AppendUvarint(b, uint64(e.OpIndex))
		b = appendBytes(b, []byte(e.What))
	}
	return b
}

func decodeResult(b []byte) (*kv.Result, error) {
	d := decoder{b: b}
	if v := d.byte(); v != resultV1 && d.err == nil {
		return nil, fmt.Errorf("fsm: stored result has unknown version %d", v)
	}
	r := &kv.Result{Index: d.uvarint(), OK: d.byte() == 1}
	n := d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		e := kv.Entry{Key: string(d.bytes())}
		if v := d.bytes(); len(v) > 0 {
			e.Value = append([]byte(nil), v...)
		}
		e.Flags, e.CreateIndex, e.ModifyIndex = d.uvarint(), d.uvarint(), d.uvarint()
		r.Entries = append(r.Entries, e)
	}
	n = d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.Errors = append(r.Errors, kv.OpError{OpIndex: int(d.uvarint()), What: string(d.bytes())})
	}
	if d.err != nil {
		return nil, fmt.Errorf("fsm: stored result: %w", d.err)
	}
	return r, nil
}

// decodeRecordHeader reads a record's indexes without copying its value.
func decodeRecordHeader(b []byte) (flags, create, modify uint64, err error) {
	d := decoder{b: b}
	if v := d.byte(); v != recordV1 && d.err == nil {
		return 0, 0, 0, fmt.Errorf("fsm: stored record has unknown version %d", v)
	}
	flags, create, modify = d.uvarint(), d.uvarint(), d.uvarint()
	return flags, create, modify, d.err
}
