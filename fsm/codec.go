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
