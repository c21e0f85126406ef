package postgres

import (
	"encoding/binary"
	"fmt"
)

// maxOpaqueFrame bounds frames that are streamed through without buffering.
// PostgreSQL itself limits a message to 1 GiB.
const maxOpaqueFrame = 1 << 30

// frame is one message, or one piece of a streamed message. Its byte slices
// alias the caller's chunk or the framer's buffer and are valid only until the
// callback returns.
type frame struct {
	typ   byte   // message type; 0 for the untyped startup-phase messages
	raw   []byte // the whole message with its header, or a piece of it
	body  []byte // the message body; nil for pieces
	piece bool   // raw is a piece of a message streamed through unbuffered
	first bool   // the first piece of a streamed message: it holds the header
}

// framer splits one direction's byte stream into frames. Chunks are not
// frames: a frame may span chunks and a chunk may hold many frames.
type framer struct {
	startup  bool // next message has no type byte (the client's first messages)
	maxFrame int  // largest message that is buffered whole
	// opaque reports message types whose bodies sluice does not inspect; they
	// are passed on piece by piece as they arrive instead of being buffered.
	opaque func(typ byte) bool

	buf        []byte // a partial message carried over from earlier chunks
	streamLeft int    // bytes still to come of an opaque message being streamed
	streamType byte
}

func (f *framer) headerLen() int {
	if f.startup {
		return 4
	}
	return 5
}

// size validates a complete header and returns the message type and the total
// message length including the header.
func (f *framer) size(hdr []byte) (byte, int, error) {
	if f.startup {
		n := int(binary.BigEndian.Uint32(hdr))
		if n < 8 || n > 10000 {
			return 0, 0, fmt.Errorf("invalid startup packet length %d", n)
		}
		return 0, n, nil
	}
	typ := hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 {
		return 0, 0, fmt.Errorf("invalid length %d for message type %q", n, typ)
	}
	total := n + 1
	limit := f.maxFrame
	if f.opaque != nil && f.opaque(typ) {
		limit = maxOpaqueFrame
	}
	if total > limit {
		return 0, 0, fmt.Errorf("message type %q of %d bytes exceeds the limit of %d bytes", typ, total, limit)
	}
	return typ, total, nil
}

func (f *framer) canStream(typ byte) bool {
	return !f.startup && f.opaque != nil && f.opaque(typ)
}

// feed consumes one chunk and calls fn for each complete message or streamed
// piece, in order. fn may change f.startup; it takes effect for the next message.
func (f *framer) feed(data []byte, fn func(frame) error) error {
	for len(data) > 0 {
		if f.streamLeft > 0 {
			n := min(len(data), f.streamLeft)
			f.streamLeft -= n
			if err := fn(frame{typ: f.streamType, raw: data[:n], piece: true}); err != nil {
				return err
			}
			data = data[n:]
			continue
		}
		hl := f.headerLen()
		if len(f.buf) == 0 && len(data) >= hl {
			typ, total, err := f.size(data[:hl])
			if err != nil {
				return err
			}
			if len(data) >= total {
				if err := fn(frame{typ: typ, raw: data[:total], body: data[hl:total]}); err != nil {
					return err
				}
				data = data[total:]
				continue
			}
			if f.canStream(typ) {
				f.streamType, f.streamLeft = typ, total-len(data)
				return fn(frame{typ: typ, raw: data, piece: true, first: true})
			}
			f.buf = append(f.buf[:0], data...)
			return nil
		}
		// Slow path: complete a message carried over from earlier chunks.
		if len(f.buf) < hl {
			n := min(hl-len(f.buf), len(data))
			f.buf = append(f.buf, data[:n]...)
			data = data[n:]
			if len(f.buf) < hl {
				return nil
			}
		}
		typ, total, err := f.size(f.buf[:hl])
		if err != nil {
			return err
		}
		if f.canStream(typ) {
			// Pass on what is buffered and stream the rest.
			f.streamType, f.streamLeft = typ, total-len(f.buf)
			piece := f.buf
			f.buf = f.buf[:0]
			if err := fn(frame{typ: typ, raw: piece, piece: true, first: true}); err != nil {
				return err
			}
			continue
		}
		n := min(total-len(f.buf), len(data))
		f.buf = append(f.buf, data[:n]...)
		data = data[n:]
		if len(f.buf) < total {
			return nil
		}
		msg := f.buf
		f.buf = f.buf[:0]
		if err := fn(frame{typ: typ, raw: msg, body: msg[hl:]}); err != nil {
			return err
		}
	}
	return nil
}

// pending reports whether a message is partly received.
func (f *framer) pending() bool { return len(f.buf) > 0 || f.streamLeft > 0 }
