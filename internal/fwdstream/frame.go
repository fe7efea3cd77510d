package fwdstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire, after the mux's marker byte (or ALPN under TLS):
//
//	client: preamble frame(hello)  then  frame(request)*
//	server: magic frame(ack)  then  frame(response)*
//
//	frame    = length:uint32 (big endian, of kind+body) kind:byte body
//	hello    = 'H' version:uvarint secret:rest
//	ack      = 'A' code:str message:rest             (code "" = accepted)
//	request  = 'Q' id:uvarint timeoutMs:uvarint group:uvarint generation:uvarint command:rest
//	                                                 (version 1: no group,
//	                                                 which is group 0;
//	                                                 version 2: no
//	                                                 generation, 0)
//	response = 'R' id:uvarint code:str body:rest      (code "": body is the
//	                                                  kv.Result in the state
//	                                                  machine's encoding, else
//	                                                  the error's text)
//	str      = length:uvarint bytes
//
// One stream carries the writes of every raft group the two nodes share;
// each request names its group, and the generation of the range as the
// forwarding node's replica has it (its route: the leader refuses a key
// the range no longer holds, naming the range as it is now, and waits
// for its own replica to catch up with a newer one). A client that meets
// a server of an older version is refused at the hello, which it takes as
// ErrUnavailable: its writes go by HTTP until the peer is upgraded.
//
// The preamble is a line, so that a peer that does not speak the protocol
// (an older version hands the connection to its HTTP server) answers at
// once ("HTTP/1.1 400") instead of waiting for the rest of a request line;
// the magic lets the client tell that answer from an acceptance.
const (
	version = 3
	// versionUngrouped is the first version's, still served: its requests
	// carry no group and are group 0's.
	versionUngrouped = 1
	// versionGrouped is the second's, still served: its requests carry no
	// generation.
	versionGrouped = 2
	preamble       = "RKVF/1\r\n"
	magic          = "RKVF"

	kindHello    = 'H'
	kindAck      = 'A'
	kindRequest  = 'Q'
	kindResponse = 'R'
)

var errMalformed = errors.New("malformed frame")

// refusedCode answers a request from a peer that was let in by its hello
// but may no longer forward (the membership or the peer secret changed):
// nothing was done, and the client must say hello again on a new stream.
const refusedCode = "refused"

// appendFrame appends a frame of kind with body parts to b.
func appendFrame(b []byte, kind byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, kind)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func uvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// readFrame reads one frame of at most limit bytes: its kind and body.
func readFrame(r *bufio.Reader, limit int) (byte, []byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(head[:]))
	if n < 1 || n > limit {
		return 0, nil, fmt.Errorf("%w: %d bytes (limit %d)", errMalformed, n, limit)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// cursor reads the fields of a frame's body.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) uvarint() uint64 {
	if c.err != nil {
		return 0
	}
	v, n := binary.Uvarint(c.b)
	if n <= 0 {
		c.err = errMalformed
		return 0
	}
	c.b = c.b[n:]
	return v
}

func (c *cursor) str() string {
	n := c.uvarint()
	if c.err != nil {
		return ""
	}
	if n > uint64(len(c.b)) {
		c.err = errMalformed
		return ""
	}
	s := string(c.b[:n])
	c.b = c.b[n:]
	return s
}

func (c *cursor) rest() []byte {
	b := c.b
	c.b = nil
	return b
}
