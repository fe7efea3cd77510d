package kv

import (
	"fmt"
	"time"
)

// Limits the API enforces. They are part of the external contract (docs/API.md).
const (
	MaxKeyBytes           = 1024
	DefaultMaxValueBytes  = 512 << 10
	MaxTxnOps             = 128 // Consul 1.14+
	MaxIdempotencyKeySize = 256
)

// Entry is one stored key. CreateIndex and ModifyIndex are the raft log
// indexes of the entries that created and last changed the key.
type Entry struct {
	Key         string
	Value       []byte
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
	// LockIndex counts the acquisitions of the key's lock; (Key, LockIndex)
	// is a fencing token. Session is the session holding the lock, if any.
	LockIndex uint64
	Session   string
}

// Verb is the kind of one operation inside a write. The names match Consul's
// transaction verbs so that the HTTP layer can map them one to one.
type Verb uint8

const (
	VerbSet            Verb = 1 // write unconditionally
	VerbCAS            Verb = 2 // write if ModifyIndex == Index (0: key must not exist)
	VerbGet            Verb = 3 // read a key; fails if absent
	VerbGetTree        Verb = 4 // read every key under a prefix
	VerbCheckIndex     Verb = 5 // fail unless ModifyIndex == Index
	VerbCheckNotExists Verb = 6 // fail if the key exists
	VerbDelete         Verb = 7 // delete a key (absent is fine)
	VerbDeleteTree     Verb = 8 // delete every key under a prefix
	VerbDeleteCAS      Verb = 9 // delete if ModifyIndex == Index
	// Locks (Consul sessions). Session names the session.
	VerbLock         Verb = 10 // acquire: write and take the lock if free (or already ours)
	VerbUnlock       Verb = 11 // release: write and free the lock if Session holds it
	VerbCheckSession Verb = 12 // fail unless Session holds the key ("" : nobody does)
	VerbGetOrEmpty   Verb = 13 // read a key; an empty entry if absent
	// The internal verbs: how session, read-replica and ACL changes were
	// written in the raft log before typed log entries (fsm.Entry), as a
	// command of that one op. The state machine reads them forever, and
	// nodes write them until every member reads typed entries
	// (fsm.EncodeLegacyEntry). Not transaction verbs: the API never takes
	// them from a client. Session is the session ID.
	VerbSessionCreate  Verb = 14 // Value: the encoded Session
	VerbSessionDestroy Verb = 15 // invalidate: release or delete its keys, start lock-delay
	// VerbReadReplica marks the server Key a read replica (Value "1"), which
	// autopilot never promotes to voter, or clears the mark (empty Value).
	VerbReadReplica Verb = 16
	// VerbACL changes policies or tokens (Value: an acl.Command as JSON).
	VerbACL Verb = 17
)

var verbNames = map[Verb]string{
	VerbSet:            "set",
	VerbCAS:            "cas",
	VerbGet:            "get",
	VerbGetTree:        "get-tree",
	VerbCheckIndex:     "check-index",
	VerbCheckNotExists: "check-not-exists",
	VerbDelete:         "delete",
	VerbDeleteTree:     "delete-tree",
	VerbDeleteCAS:      "delete-cas",
	VerbLock:           "lock",
	VerbUnlock:         "unlock",
	VerbCheckSession:   "check-session",
	VerbGetOrEmpty:     "get-or-empty",
	VerbSessionCreate:  "session-create",
	VerbSessionDestroy: "session-destroy",
	VerbReadReplica:    "read-replica",
	VerbACL:            "acl",
}

// Internal reports whether v is a session, read-replica or ACL verb, which
// only the node itself proposes (in the legacy encoding of those changes).
func (v Verb) Internal() bool {
	return v == VerbSessionCreate || v == VerbSessionDestroy || v == VerbReadReplica || v == VerbACL
}

func (v Verb) String() string {
	if n, ok := verbNames[v]; ok {
		return n
	}
	return fmt.Sprintf("verb(%d)", uint8(v))
}

// Valid reports whether v is a known verb.
func (v Verb) Valid() bool { _, ok := verbNames[v]; return ok }

// Writes reports whether the verb changes state.
func (v Verb) Writes() bool {
	switch v {
	case VerbSet, VerbCAS, VerbDelete, VerbDeleteTree, VerbDeleteCAS, VerbLock, VerbUnlock,
		VerbSessionCreate, VerbSessionDestroy, VerbReadReplica, VerbACL:
		return true
	}
	return false
}

// ParseVerb maps a Consul transaction verb name to a Verb.
func ParseVerb(name string) (Verb, error) {
	for v, n := range verbNames {
		if n == name && !v.Internal() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown verb %q", ErrInvalid, name)
}

// Op is one operation of a write. Key is a prefix for the *-tree verbs.
type Op struct {
	Verb    Verb
	Key     string
	Value   []byte
	Flags   uint64
	Index   uint64
	Session string
}

// Command is a write of keys: a list of operations applied atomically. A
// single PUT is a command of one op. It is the body of a KV log entry
// (fsm.Entry), and in the log's legacy encoding the whole entry.
type Command struct {
	Ops []Op
	// Time is stamped by the proposer; it is the only clock the state machine
	// sees, so that applying the log stays deterministic.
	Time time.Time
	// IdempotencyKey, if set, makes the command apply at most once.
	IdempotencyKey string
	// RequestDigest identifies the request an idempotency key came with: a
	// key reused for a different request is refused, not answered with the
	// first request's result.
	RequestDigest []byte
}

// OpError says why a command's checks failed. OpIndex points into Ops.
type OpError struct {
	OpIndex int
	What    string
	// InvalidSession: the op named a session that does not exist (a KV
	// acquire answers it with an error, not with false).
	InvalidSession bool
}

// Result is the outcome of an applied command.
type Result struct {
	// Index is the raft log index the command was applied at.
	Index uint64
	// OK is false when a check failed; then nothing was changed and Errors
	// says why.
	OK      bool
	Entries []Entry
	Errors  []OpError
}

// ReadOnly reports whether no operation writes.
func (c *Command) ReadOnly() bool {
	for _, op := range c.Ops {
		if op.Verb.Writes() {
			return false
		}
	}
	return true
}

// Validate checks the parts of a command that do not depend on state: verbs,
// key sizes, value sizes and op count. maxValue <= 0 means the default.
func (c *Command) Validate(maxValue int) error {
	if maxValue <= 0 {
		maxValue = DefaultMaxValueBytes
	}
	if len(c.Ops) == 0 {
		return fmt.Errorf("%w: no operations", ErrInvalid)
	}
	if len(c.Ops) > MaxTxnOps {
		return fmt.Errorf("%w: %d operations, at most %d", ErrTooLarge, len(c.Ops), MaxTxnOps)
	}
	if len(c.IdempotencyKey) > MaxIdempotencyKeySize {
		return fmt.Errorf("%w: idempotency key over %d bytes", ErrInvalid, MaxIdempotencyKeySize)
	}
	for i, op := range c.Ops {
		if !op.Verb.Valid() {
			return fmt.Errorf("%w: op %d: unknown verb %d", ErrInvalid, i, op.Verb)
		}
		if op.Verb.Internal() {
			if len(c.Ops) != 1 {
				return fmt.Errorf("%w: a session or membership operation is a command of its own", ErrInvalid)
			}
			continue
		}
		if err := ValidateKey(op.Key, op.Verb == VerbGetTree || op.Verb == VerbDeleteTree); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		if (op.Verb == VerbLock || op.Verb == VerbUnlock) && op.Session == "" {
			return fmt.Errorf("%w: op %d: %s needs a session", ErrInvalid, i, op.Verb)
		}
		if len(op.Value) > maxValue {
			return fmt.Errorf("%w: op %d: value is %d bytes, limit %d", ErrTooLarge, i, len(op.Value), maxValue)
		}
	}
	return nil
}

// ValidateKey checks a key (or, with prefix set, a prefix, which may be empty).
func ValidateKey(key string, prefix bool) error {
	if key == "" && !prefix {
		return fmt.Errorf("%w: missing key", ErrInvalid)
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrInvalid, len(key), MaxKeyBytes)
	}
	return nil
}
