package rangemap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Encoding of a descriptor, as the FSM stores it and peers send it:
//
//	1 id:uvarint generation:uvarint start:bytes end:bytes n:uvarint (node:bytes voter:byte)*n
//	bytes := len:uvarint data
const descriptorVersion = 1

// maxReplicas bounds what a decoder accepts before allocating.
const maxReplicas = 64

// AppendDescriptor appends d's encoding to b.
func AppendDescriptor(b []byte, d Descriptor) []byte {
	b = append(b, descriptorVersion)
	b = binary.AppendUvarint(b, d.ID)
	b = binary.AppendUvarint(b, d.Generation)
	b = appendString(b, d.Start)
	b = appendString(b, d.End)
	b = binary.AppendUvarint(b, uint64(len(d.Replicas)))
	for _, r := range d.Replicas {
		b = appendString(b, r.Node)
		if r.Voter {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

// DecodeDescriptor decodes one descriptor from b and returns what follows
// it.
func DecodeDescriptor(b []byte) (Descriptor, []byte, error) {
	var d Descriptor
	if len(b) == 0 || b[0] != descriptorVersion {
		return d, nil, errors.New("range descriptor: unknown encoding")
	}
	r := reader{b: b[1:]}
	d.ID = r.uvarint()
	d.Generation = r.uvarint()
	d.Start = r.string()
	d.End = r.string()
	n := r.uvarint()
	if n > maxReplicas {
		return Descriptor{}, nil, fmt.Errorf("range descriptor: %d replicas", n)
	}
	for range n {
		node := r.string()
		var voter bool
		switch r.byte() {
		case 0:
		case 1:
			voter = true
		default:
			r.err = errors.New("bad voter flag")
		}
		d.Replicas = append(d.Replicas, Replica{Node: node, Voter: voter})
	}
	if r.err != nil {
		return Descriptor{}, nil, fmt.Errorf("range descriptor: %w", r.err)
	}
	if d.End != "" && d.End <= d.Start {
		return Descriptor{}, nil, fmt.Errorf("range descriptor: %w: %s is empty", ErrInvalid, d)
	}
	return d, r.b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errors.New("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}
