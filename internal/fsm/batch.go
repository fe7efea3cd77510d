package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Replicated bookkeeping besides the keys themselves:
//
//   - tombstones ("t"+key → index of the delete) let a prefix query report an
//     index that rises when a key under it is deleted;
//   - the idempotency table ("i"+idempotency key → first result) makes a
//     keyed write apply at most once;
//   - the expiry queue ("e"+kind+time+index+name, ordered by time) drops both
//     by age, a bounded number per batch, using the commands' own timestamps
//     so that every node expires the same entries at the same log index.
//
// Reaping a tombstone raises "m:reaped", which every query index includes,
// so indexes never go backwards when tombstones disappear.
var (
	tombPrefix    = []byte("t")
	idemPrefix    = []byte("i")
	expiryPrefix  = []byte("e")
	metaReaped    = []byte("m:reaped")
	metaIdemCount = []byte("m:idemcount")
	metaClock     = []byte("m:clock") // latest command time applied (unix ns)
	metaRange     = []byte("m:range") // the range's descriptor (absent in range 0 before any split)
	metaFloor     = []byte("m:floor") // the last index handed out (absent before the range's first split)
	// metaLogVersion is the newest entry version the range's log has
	// carried (absent: none but KV writes and the legacy forms).
	metaLogVersion = []byte("m:logversion")
)

// These are part of the replicated state machine's behaviour: every node
// must run with the same values. Variables only so tests can shrink them.
var (
	tombstoneTTL        = 15 * time.Minute
	idempotencyTTL      = 10 * time.Minute // the contract's minimum
	maxIdempotencyKeys  = int64(2_000_000) // ~3,300 keyed writes/s for 10 minutes
	maxExpiryPerCommand = 64
)

const (
	kindTomb = 't'
	kindIdem = 'i'
)

func prefixed(p []byte, name string) []byte {
	b := make([]byte, 0, len(p)+len(name))
	return append(append(b, p...), name...)
}

func (k keyspace) expiryKey(kind byte, t int64, index uint64, name string) []byte {
	b := make([]byte, 0, len(k.prefix)+2+16+len(name))
	b = append(append(b, k.prefix...), expiryPrefix...)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	b = binary.BigEndian.AppendUint64(b, index)
	return append(b, name...)
}

// writer is what both a Badger transaction and a WriteBatch offer.
type writer interface {
	Set(k, v []byte) error
	Delete(k []byte) error
}

// batchState carries one Badger commit's worth of bookkeeping. Its values
// reach the FSM only after the commit succeeded (publish).
type batchState struct {
	ks        keyspace
	span      *rangemap.Descriptor // changed by a split in the batch
	txn       *badger.Txn
	changed   []string // keys set or deleted, for watchers
	confIndex uint64
	reaped    uint64
	idemCount int64
	next      map[byte]int64 // earliest expiry-queue time per kind
	now       int64          // latest command time seen (unix ns)
	// sessionsChanged: a session was created or destroyed (watchers).
	sessionsChanged bool
	// aclChanged: the index of the batch's last ACL change (0: none).
	aclChanged uint64
	// floor is the last index handed out, once the range counts its own
	// indexes (clockMode, from its first split on; see index).
	floor     uint64
	clockMode bool
	// splits made by the batch: each one's left and right halves.
	splits [][2]rangemap.Descriptor
	// entries applied in the batch.
	entries int
	// logVersion is the newest entry version seen in the log, this batch
	// included (noteForm).
	logVersion uint64
	// pieces, set for a split applied on its own (applySplitInPieces),
	// takes the bookkeeping it moves.
	pieces *splitPieces
}

func (f *FSM) newBatch(txn *badger.Txn) *batchState {
	f.metaMu.Lock()
	defer f.metaMu.Unlock()
	return &batchState{
		ks: f.ks, span: f.span.Load(),
		txn: txn, confIndex: f.confIndex.Load(),
		reaped: f.reaped, idemCount: f.idemCount,
		next:  map[byte]int64{kindTomb: f.next[kindTomb], kindIdem: f.next[kindIdem], kindDelay: f.next[kindDelay], kindDead: f.next[kindDead]},
		now:   f.lastTime,
		floor: f.floor, clockMode: f.clockMode,
		logVersion: f.logVersion.Load(),
	}
}

// noteForm raises the log's entry version to what a typed entry (the v3
// form) shows: its leader wrote it only once every server of the range
// read its kind, so a later leader may write that kind too without asking
// them again (see LogVersion). The legacy forms show nothing.
func (b *batchState) noteForm(data []byte, e *Entry) {
	if len(data) > 0 && data[0] == entryV3 {
		b.logVersion = max(b.logVersion, uint64(e.Kind.MinVersion()))
	}
}

// publish makes a committed batch's bookkeeping visible.
func (f *FSM) publish(b *batchState, applied uint64) {
	f.span.Store(b.span)
	f.entries.Add(uint64(b.entries))
	f.metaMu.Lock()
	f.reaped, f.idemCount, f.lastTime = b.reaped, b.idemCount, b.now
	f.floor, f.clockMode = b.floor, b.clockMode
	f.next[kindTomb], f.next[kindIdem], f.next[kindDelay], f.next[kindDead] = b.next[kindTomb], b.next[kindIdem], b.next[kindDelay], b.next[kindDead]
	f.metaMu.Unlock()
	f.confIndex.Store(b.confIndex)
	f.logVersion.Store(b.logVersion)
	if b.aclChanged != 0 {
		f.aclIndex.Store(b.aclChanged)
	}
	f.advance(applied)
	if f.notify != nil && len(b.changed) > 0 {
		f.notify.KeysChanged(b.changed)
	}
	if f.notify != nil && b.sessionsChanged {
		f.notify.SessionsChanged()
	}
	for _, sp := range b.splits {
		f.store.reload(sp[1].ID)
		if hook := f.onSplit.Load(); hook != nil {
			(*hook)(sp[0], sp[1])
		}
	}
}

// apply applies one decoded log entry at index idx. w receives the writes
// (the batch's transaction, or a WriteBatch for oversized entries). Every
// read happens before the entry's first write, so both kinds of w see the
// same state and every node computes the same outcome, whatever Badger's
// transaction limits made of its batches. The answer is a *kv.Result, or an
// error the entry is refused with (the same on every node); err is a
// storage failure. force is for KV commands only (see applyOversized).
//
// Every kind goes through the same steps: the clock, the idempotency
// check, a step of expiry, the change, the idempotency record.
func (b *batchState) apply(w writer, idx uint64, e *Entry, force bool) (answer any, err error) {
	t := max(b.now, e.Time.UnixNano())
	if e.Time.IsZero() {
		t = b.now
	}
	b.now = t // the clock only moves forward, and is persisted (m:clock)
	if e.Kind == KindClose {
		return b.close(e.Close), nil // takes no index, and nothing expires
	}
	idx = b.index(idx, t)
	b.entries++
	if e.IdempotencyKey != "" {
		res, digest, err := b.firstResult(e.IdempotencyKey)
		if err != nil {
			return nil, err
		}
		if res != nil {
			if len(digest) > 0 && len(e.RequestDigest) > 0 && !bytes.Equal(digest, e.RequestDigest) {
				return kv.Errorf(kv.ErrIdempotencyKeyReused, "Idempotency-Key %q was first used for a different request", e.IdempotencyKey), nil
			}
			return res, nil
		}
	}
	// A split reads the bookkeeping it moves: no expiry writes before it,
	// so that its reads see the same state whether it is applied in one
	// transaction or in pieces.
	if e.Kind != KindSplit {
		if err := b.expire(w); err != nil {
			return nil, fmt.Errorf("expire: %w", err)
		}
	}
	if refusal := b.misplaced(e); refusal != nil {
		return refusal, nil
	}
	var res *kv.Result
	switch e.Kind {
	case KindKV:
		res, err = b.kvCommand(w, idx, t, e.KV, force)
	case KindSessionCreate:
		res, err = b.createSession(w, idx, e.Session, e.Unparsed)
	case KindSessionDestroy:
		res, err = b.destroySession(w, idx, e.SessionID)
	case KindReplicaMark:
		res, err = markReplica(w, idx, e.Replica)
	case KindNewRangeID:
		res, err = b.newRangeID(w)
	case KindSessionRelease:
		res, err = b.releaseSession(w, idx, e.Release)
	case KindReleaseDone:
		res, err = &kv.Result{Index: idx, OK: true}, w.Delete(prefixed(pendingPrefix, e.SessionID))
	case KindRangeMeta:
		res, err = b.rangeMeta(w, idx, e.Meta)
	case KindKeepWhole:
		var answer any
		if answer, err = b.keepWhole(w, idx, e.Keep); err != nil {
			return nil, err
		}
		r, ok := answer.(*kv.Result)
		if !ok {
			return answer, nil
		}
		res = r
	case KindSplit:
		var answer any
		if answer, err = b.split(w, idx, e.Split); err != nil {
			return nil, err
		}
		r, ok := answer.(*kv.Result)
		if !ok {
			return answer, nil // a refusal: no idempotency record
		}
		res = r
	case KindACL:
		var answer any
		if answer, err = b.aclCommand(w, idx, t, e.ACL, e.Unparsed); err != nil {
			return nil, err
		}
		r, ok := answer.(*kv.Result)
		if !ok {
			return answer, nil // a refusal: no idempotency record
		}
		res = r
	default: // DecodeEntry returns no other kind
		return kv.Errorf(kv.ErrInvalid, "log entry %d of unknown kind %d", idx, e.Kind), nil
	}
	if err != nil {
		return nil, err
	}
	if e.IdempotencyKey != "" {
		if err := w.Set(b.ks.localOf(idemPrefix, e.IdempotencyKey), encodeIdem(t, e.RequestDigest, res)); err != nil {
			return nil, err
		}
		if err := b.enqueueIdem(w, t, idx, e); err != nil {
			return nil, err
		}
		b.idemCount++
	}
	return res, nil
}

// misplaced refuses an entry the range cannot apply: a key outside its
// span (a split gave it to another range since the entry was routed: the
// node retries it there, nothing having been done here), or, outside
// range 0, what only range 0 holds (sessions, locks, ACLs, replica marks).
func (b *batchState) misplaced(e *Entry) error {
	switch {
	case e.Kind == KindKV && e.KV != nil:
		for i, op := range e.KV.Ops {
			if op.Verb != kv.VerbGetTree && op.Verb != kv.VerbDeleteTree && !b.span.Contains(op.Key) {
				return kv.Errorf(kv.ErrRangeMoved, "op %d: %q is not in %s", i, op.Key, b.span)
			}
		}
	case e.Kind == KindSessionRelease && b.ks.id == 0:
		return kv.Errorf(kv.ErrInvalid, "a %s entry belongs to ranges other than 0", e.Kind)
	case e.Kind != KindKV && e.Kind != KindSplit && e.Kind != KindSessionRelease && e.Kind != KindKeepWhole && b.ks.id != 0:
		return kv.Errorf(kv.ErrInvalid, "a %s entry belongs to range 0, not %s", e.Kind, b.span)
	}
	return nil
}

// kvCommand evaluates c (nil: no ops) at time t in an overlay and, if its
// checks pass, writes its changes.
func (b *batchState) kvCommand(w writer, idx uint64, t int64, c *kv.Command, force bool) (*kv.Result, error) {
	if c == nil {
		c = &kv.Command{}
	}
	o := b.overlay()
	o.now = t
	res, err := execute(o, idx, c, force)
	if err != nil {
		return nil, err
	}
	if res.OK {
		if err := b.flush(w, idx, o); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// flush writes an overlay's changes: entries, tombstones of deleted keys
// (with their LockIndex, so a key created again continues it), and the
// sessions' hold index.
func (b *batchState) flush(w writer, idx uint64, o *overlay) error {
	if !o.changed() {
		return nil
	}
	for _, key := range o.order {
		var err error
		if e := o.pending[key]; e != nil {
			err = w.Set(dataKey(key), encodeRecord(e))
		} else {
			err = b.deleteKey(w, idx, key, o.lockIndex[key])
		}
		if err != nil {
			return err
		}
	}
	for _, h := range o.held {
		if err := w.Set(b.ks.holdsKey(h[0], h[1]), nil); err != nil {
			return err
		}
	}
	for _, h := range o.freed {
		if err := w.Delete(b.ks.holdsKey(h[0], h[1])); err != nil {
			return err
		}
	}
	b.changed = append(b.changed, o.order...)
	return nil
}

// deleteKey writes the tombstone before the delete: if a WriteBatch is cut
// short by a crash, the replay still sees the key and deletes it again,
// instead of losing its tombstone. The tombstone keeps the key's LockIndex.
func (b *batchState) deleteKey(w writer, idx uint64, key string, lockIndex uint64) error {
	tomb := uintBytes(idx)
	if lockIndex > 0 {
		tomb = binary.BigEndian.AppendUint64(tomb, lockIndex)
	}
	if err := w.Set(prefixed(tombPrefix, key), tomb); err != nil {
		return err
	}
	if err := b.enqueue(w, kindTomb, b.now, idx, key); err != nil {
		return err
	}
	return w.Delete(dataKey(key))
}

// Idempotency record: time:8 [0 digest:bytes] result. A result starts with
// its version (1 or 2), so a 0 marks the digest of the first request.
func encodeIdem(t int64, digest []byte, res *kv.Result) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(t))
	if len(digest) > 0 {
		v = appendBytes(append(v, 0), digest)
	}
	return append(v, encodeResult(res)...)
}

func decodeIdem(v []byte) (t int64, digest, result []byte, err error) {
	if len(v) < 9 {
		return 0, nil, nil, fmt.Errorf("idempotency record of %d bytes", len(v))
	}
	t = int64(binary.BigEndian.Uint64(v))
	rest := v[8:]
	if rest[0] == 0 {
		d := decoder{b: rest[1:]}
		digest = d.bytes()
		if d.err != nil {
			return 0, nil, nil, fmt.Errorf("idempotency record: %w", d.err)
		}
		rest = d.b
	}
	return t, digest, rest, nil
}

// firstResult returns the stored answer of an earlier write with the same
// idempotency key and that write's request digest, or nil. A record past
// its TTL counts as absent whether or not it has been reaped yet.
func (b *batchState) firstResult(key string) (*kv.Result, []byte, error) {
	item, err := b.txn.Get(b.ks.localOf(idemPrefix, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read idempotency key: %w", err)
	}
	var res *kv.Result
	var digest []byte
	err = item.Value(func(v []byte) error {
		t, d, result, err := decodeIdem(v)
		if err != nil || t <= b.now-int64(idempotencyTTL) {
			return err
		}
		digest = append([]byte(nil), d...)
		res, err = decodeResult(result)
		return err
	})
	return res, digest, err
}

func (b *batchState) enqueue(w writer, kind byte, t int64, idx uint64, name string) error {
	b.next[kind] = min(b.next[kind], t)
	return w.Set(b.ks.expiryKey(kind, t, idx, name), nil)
}

// enqueueIdem queues e's idempotency record for expiry. Once the range
// has split, the queue entry also names the first key of the command the
// record answers, so that a later split knows which half the record goes
// to (split.go); before, the entry is written as it always was.
func (b *batchState) enqueueIdem(w writer, t int64, idx uint64, e *Entry) error {
	var firstKey []byte
	if b.clockMode && e.Kind == KindKV && e.KV != nil && len(e.KV.Ops) > 0 {
		firstKey = []byte(e.KV.Ops[0].Key)
	}
	b.next[kindIdem] = min(b.next[kindIdem], t)
	return w.Set(b.ks.expiryKey(kindIdem, t, idx, e.IdempotencyKey), firstKey)
}

// expire drops up to maxExpiryPerCommand queue entries that are older than
// their TTL (or, for the idempotency table, over the size cap). It reads
// through the batch's transaction and writes through w.
func (b *batchState) expire(w writer) error {
	budget := maxExpiryPerCommand
	for _, k := range []struct {
		kind byte
		ttl  time.Duration
	}{{kindTomb, tombstoneTTL}, {kindIdem, idempotencyTTL}, {kindDelay, 0}, {kindDead, deadSessionTTL}} {
		cutoff := b.now - int64(k.ttl)
		overCap := k.kind == kindIdem && b.idemCount > maxIdempotencyKeys
		if (b.next[k.kind] > cutoff && !overCap) || budget == 0 {
			continue
		}
		n, err := b.expireKind(w, k.kind, cutoff, budget)
		if err != nil {
			return fmt.Errorf("expire %c: %w", k.kind, err)
		}
		budget -= n
	}
	return nil
}

func (b *batchState) expireKind(w writer, kind byte, cutoff int64, budget int) (int, error) {
	prefix := b.ks.local(append(append([]byte(nil), expiryPrefix...), kind))
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := b.txn.NewIterator(opts)
	var victims [][]byte
	b.next[kind] = math.MaxInt64
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		t := int64(binary.BigEndian.Uint64(k[len(prefix):]))
		overCap := kind == kindIdem && b.idemCount-int64(len(victims)) > maxIdempotencyKeys
		if (t > cutoff && !overCap) || len(victims) >= budget {
			b.next[kind] = t
			break
		}
		victims = append(victims, k)
	}
	it.Close()
	for _, k := range victims {
		idx := binary.BigEndian.Uint64(k[len(prefix)+8:])
		name := string(k[len(prefix)+16:])
		if err := b.drop(w, kind, idx, name); err != nil {
			return 0, err
		}
		if err := w.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(victims), nil
}

// drop removes the tombstone, idempotency record or lock-delay a queue
// entry points to, unless a later write replaced it (then its own queue
// entry owns it).
func (b *batchState) drop(w writer, kind byte, idx uint64, name string) error {
	var key []byte
	switch kind {
	case kindTomb:
		key = prefixed(tombPrefix, name)
	case kindIdem:
		key = b.ks.localOf(idemPrefix, name)
		b.idemCount--
	case kindDelay:
		key = prefixed(delayPrefix, name)
	case kindDead:
		key = b.ks.localOf(deadPrefix, name)
	}
	item, err := b.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var owner uint64
	err = item.Value(func(v []byte) error {
		switch kind {
		case kindTomb:
			owner = binary.BigEndian.Uint64(v)
		case kindDelay:
			owner = binary.BigEndian.Uint64(v[8:])
		case kindDead:
			owner = binary.BigEndian.Uint64(v)
		case kindIdem:
			_, _, result, err := decodeIdem(v)
			if err != nil {
				return err
			}
			owner = (&decoder{b: result[1:]}).uvarint() // after the result's version byte
		}
		return nil
	})
	if err != nil || owner != idx {
		return err
	}
	if kind == kindTomb {
		b.reaped = max(b.reaped, idx)
	}
	return w.Delete(key)
}

// writeMeta records the batch's indexes in its transaction.
func (b *batchState) writeMeta(applied uint64) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{metaApplied, applied}, {metaConfIndex, b.confIndex}, {metaReaped, b.reaped}, {metaIdemCount, uint64(b.idemCount)}, {metaClock, uint64(b.now)}} {
		if err := b.txn.Set(b.ks.local(kv.k), uintBytes(kv.v)); err != nil {
			return err
		}
	}
	if b.logVersion > 0 {
		if err := b.txn.Set(b.ks.local(metaLogVersion), uintBytes(b.logVersion)); err != nil {
			return err
		}
	}
	if b.clockMode {
		return b.txn.Set(b.ks.local(metaFloor), uintBytes(b.floor))
	}
	return nil
}

// loadMeta reads the bookkeeping from Badger (at Open and after Restore).
func (f *FSM) loadMeta(txn *badger.Txn) error {
	vals := make([]uint64, 8)
	for i, k := range [][]byte{metaApplied, metaConfIndex, metaReaped, metaIdemCount, metaClock, metaACL, metaFloor, metaLogVersion} {
		v, err := readUint(txn, f.ks.local(k))
		if err != nil {
			return err
		}
		vals[i] = v
	}
	f.metaMu.Lock()
	defer f.metaMu.Unlock()
	f.reaped, f.idemCount, f.lastTime = vals[2], int64(vals[3]), int64(vals[4])
	f.floor, f.clockMode = vals[6], vals[6] != 0
	for _, kind := range []byte{kindTomb, kindIdem, kindDelay, kindDead} {
		f.next[kind] = math.MaxInt64
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = f.ks.local(append(append([]byte(nil), expiryPrefix...), kind))
		it := txn.NewIterator(opts)
		if it.Rewind(); it.Valid() {
			f.next[kind] = int64(binary.BigEndian.Uint64(it.Item().Key()[len(opts.Prefix):]))
		}
		it.Close()
	}
	span, err := readDescriptor(txn, f.ks)
	if err != nil {
		return err
	}
	if f.ks.id == 0 && span.End == "" {
		// Range 0 without a descriptor of its own (cut short in a reset or
		// a restore) must not claim the keys of the ranges split off it.
		if start, ok, err := firstOtherStart(txn); err != nil {
			return err
		} else if ok {
			span = &rangemap.Descriptor{ID: 0, Start: span.Start, End: start, Generation: span.Generation, Replicas: span.Replicas}
		}
	}
	f.span.Store(span)
	f.confIndex.Store(vals[1])
	f.aclIndex.Store(vals[5])
	f.logVersion.Store(vals[7])
	f.peerSecret.Store("") // a restore may bring another cluster's
	f.applied.Store(vals[0])
	return nil
}

// overlay starts a command's overlay on the batch's view of the range.
func (b *batchState) overlay() *overlay { return newOverlay(b.txn, b.ks, b.span) }

// readDescriptor reads the range's descriptor: nil if the range does not
// exist here; range 0 before any split covers the whole keyspace.
func readDescriptor(txn *badger.Txn, ks keyspace) (*rangemap.Descriptor, error) {
	item, err := txn.Get(ks.local(metaRange))
	if errors.Is(err, badger.ErrKeyNotFound) {
		if ks.id == 0 {
			return wholeKeyspace(), nil
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d rangemap.Descriptor
	err = item.Value(func(v []byte) (err error) {
		d, _, err = rangemap.DecodeDescriptor(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("range %d's descriptor: %w", ks.id, err)
	}
	return &d, nil
}
