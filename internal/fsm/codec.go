package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Command encoding. All integers are varints (encoding/binary):
//
//	v1: command := 1 time:varint(unix ns) idemKey:bytes nops:uvarint op1*
//	    op1     := verb:byte key:bytes value:bytes flags:uvarint index:uvarint
//	v2: command := 2 time:varint idemKey:bytes digest:bytes nops:uvarint op2*
//	    op2     := op1 session:bytes
//	bytes   := len:uvarint data
//
// The encoding is deterministic (same Command, same bytes) and compact; a new
// field means a new version byte, and old versions stay decodable forever
// because they live in raft logs and snapshots. A command that needs none
// of v2's fields is written as v1, which older nodes read. Version 3 is
// taken by the typed log entries of the other kinds (entry.go): a log
// entry is read with DecodeEntry, which reads all three.
const (
	commandV1 = 1
	commandV2 = 2
)

var errCorrupt = errors.New("corrupt command")

func needsV2(c *kv.Command) bool {
	if len(c.RequestDigest) > 0 {
		return true
	}
	for _, op := range c.Ops {
		if op.Session != "" {
			return true
		}
	}
	return false
}

// EncodeCommand serialises c for the raft log.
func EncodeCommand(c *kv.Command) []byte {
	v2 := needsV2(c)
	size := 1 + binary.MaxVarintLen64*3 + len(c.IdempotencyKey) + len(c.RequestDigest)
	for _, op := range c.Ops {
		size += 1 + binary.MaxVarintLen64*5 + len(op.Key) + len(op.Value) + len(op.Session)
	}
	b := make([]byte, 0, size)
	if v2 {
		b = append(b, commandV2)
	} else {
		b = append(b, commandV1)
	}
	var t int64
	if !c.Time.IsZero() {
		t = c.Time.UnixNano()
	}
	b = binary.AppendVarint(b, t)
	b = appendBytes(b, []byte(c.IdempotencyKey))
	if v2 {
		b = appendBytes(b, c.RequestDigest)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Ops)))
	for _, op := range c.Ops {
		b = append(b, byte(op.Verb))
		b = appendBytes(b, []byte(op.Key))
		b = appendBytes(b, op.Value)
		b = binary.AppendUvarint(b, op.Flags)
		b = binary.AppendUvarint(b, op.Index)
		if v2 {
			b = appendBytes(b, []byte(op.Session))
		}
	}
	return b
}

// DecodeCommand parses what EncodeCommand produced. It never panics.
func DecodeCommand(b []byte) (*kv.Command, error) {
	d := decoder{b: b}
	version := d.byte()
	if d.err != nil {
		return nil, d.err
	}
	if version != commandV1 && version != commandV2 {
		return nil, fmt.Errorf("%w: unknown version %d", errCorrupt, version)
	}
	c := &kv.Command{}
	if t := d.varint(); t != 0 {
		c.Time = time.Unix(0, t)
	}
	c.IdempotencyKey = string(d.bytes())
	if version == commandV2 {
		if v := d.bytes(); len(v) > 0 {
			c.RequestDigest = append([]byte(nil), v...)
		}
	}
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
		if version == commandV2 {
			op.Session = string(d.bytes())
		}
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

// record is the stored form of one key:
//
//	v1: 1 flags create modify value...
//	v2: 2 flags create modify lockIndex session:bytes value...
//
// v2 only for keys that were ever locked.
const (
	recordV1 = 1
	recordV2 = 2
)

func encodeRecord(e *kv.Entry) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(e.Session)+len(e.Value))
	v2 := e.LockIndex != 0 || e.Session != ""
	if v2 {
		b = append(b, recordV2)
	} else {
		b = append(b, recordV1)
	}
	b = binary.AppendUvarint(b, e.Flags)
	b = binary.AppendUvarint(b, e.CreateIndex)
	b = binary.AppendUvarint(b, e.ModifyIndex)
	if v2 {
		b = binary.AppendUvarint(b, e.LockIndex)
		b = appendBytes(b, []byte(e.Session))
	}
	return append(b, e.Value...)
}

// decodeRecord fills e from b. The value is copied: Badger's buffers are only
// valid inside their transaction.
func decodeRecord(b []byte, e *kv.Entry) error {
	d := decoder{b: b}
	if err := d.recordHeader(e); err != nil {
		return err
	}
	e.Value = nil
	if len(d.b) > 0 {
		e.Value = append([]byte(nil), d.b...)
	}
	return nil
}

// recordHeader reads everything of a record but its value.
func (d *decoder) recordHeader(e *kv.Entry) error {
	v := d.byte()
	if d.err == nil && v != recordV1 && v != recordV2 {
		return fmt.Errorf("fsm: stored record has unknown version %d", v)
	}
	e.Flags = d.uvarint()
	e.CreateIndex = d.uvarint()
	e.ModifyIndex = d.uvarint()
	e.LockIndex, e.Session = 0, ""
	if v == recordV2 {
		e.LockIndex = d.uvarint()
		e.Session = string(d.bytes())
	}
	if d.err != nil {
		return fmt.Errorf("fsm: stored record: %w", d.err)
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
	// corrupt is what a failure wraps: errCorrupt if nil.
	corrupt error
}

func (d *decoder) fail(what string) { d.failf("truncated %s", what) }

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		corrupt := d.corrupt
		if corrupt == nil {
			corrupt = errCorrupt
		}
		d.err = fmt.Errorf("%w: %s", corrupt, fmt.Sprintf(format, args...))
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

// Stored result of an idempotent command:
//
//	v1: 1 index:uvarint ok:byte nentries:uvarint entry1* nerrors:uvarint error1*
//	    entry1 := key:bytes value:bytes flags:uvarint create:uvarint modify:uvarint
//	    error1 := opIndex:uvarint what:bytes
//	v2: the same with entry2 := entry1 lockIndex:uvarint session:bytes and
//	    error2 := error1 invalidSession:byte; only when a lock field is set.
const (
	resultV1 = 1
	resultV2 = 2
)

func resultNeedsV2(r *kv.Result) bool {
	for _, e := range r.Entries {
		if e.LockIndex != 0 || e.Session != "" {
			return true
		}
	}
	for _, e := range r.Errors {
		if e.InvalidSession {
			return true
		}
	}
	return false
}

// EncodeResult is a result's binary form (what idempotency records store,
// and what the forwarding stream sends back).
func EncodeResult(r *kv.Result) []byte { return encodeResult(r) }

// DecodeResult reads EncodeResult's form.
func DecodeResult(b []byte) (*kv.Result, error) { return decodeResult(b) }

func encodeResult(r *kv.Result) []byte {
	v2 := resultNeedsV2(r)
	b := []byte{resultV1}
	if v2 {
		b[0] = resultV2
	}
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
		if v2 {
			b = binary.AppendUvarint(b, e.LockIndex)
			b = appendBytes(b, []byte(e.Session))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(r.Errors)))
	for _, e := range r.Errors {
		b = binary.AppendUvarint(b, uint64(e.OpIndex))
		b = appendBytes(b, []byte(e.What))
		if v2 {
			var inv byte
			if e.InvalidSession {
				inv = 1
			}
			b = append(b, inv)
		}
	}
	return b
}

func decodeResult(b []byte) (*kv.Result, error) {
	d := decoder{b: b}
	v := d.byte()
	if v != resultV1 && v != resultV2 && d.err == nil {
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
		if v == resultV2 {
			e.LockIndex, e.Session = d.uvarint(), string(d.bytes())
		}
		r.Entries = append(r.Entries, e)
	}
	n = d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		oe := kv.OpError{OpIndex: int(d.uvarint()), What: string(d.bytes())}
		if v == resultV2 {
			oe.InvalidSession = d.byte() == 1
		}
		r.Errors = append(r.Errors, oe)
	}
	if d.err != nil {
		return nil, fmt.Errorf("fsm: stored result: %w", d.err)
	}
	return r, nil
}

// decodeRecordHeader reads a record's indexes without copying its value.
func decodeRecordHeader(b []byte) (flags, create, modify uint64, err error) {
	var e kv.Entry
	d := decoder{b: b}
	err = d.recordHeader(&e)
	return e.Flags, e.CreateIndex, e.ModifyIndex, err
}
