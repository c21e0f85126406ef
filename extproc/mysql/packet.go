package mysql

import (
	"encoding/binary"
	"fmt"
)

// maxPayload is the largest payload of one physical packet; a payload of
// exactly this size continues in the next packet.
const maxPayload = 0xFFFFFF

// phys is one physical packet. Its slices alias the framer's buffer and are
// valid only until the callback returns.
type phys struct {
	seq     byte
	payload []byte
	raw     []byte // header and payload
	cont    bool   // continues the previous packet's logical packet
	more    bool   // the next packet continues this logical packet
}

// framer splits one direction's bytes into physical packets (at most 16 MB
// each, so at most that much is buffered); logical packets of 16 MB and more
// arrive as several, marked cont/more.
type framer struct {
	buf  []byte
	cont bool
}

func (f *framer) feed(data []byte, fn func(phys) error) error {
	if len(f.buf) == 0 {
		// Fast path: whole packets straight from the chunk.
		for len(data) >= 4 {
			n := int(data[0]) | int(data[1])<<8 | int(data[2])<<16
			if len(data) < 4+n {
				break
			}
			p := phys{seq: data[3], payload: data[4 : 4+n], raw: data[:4+n], cont: f.cont, more: n == maxPayload}
			f.cont = p.more
			if err := fn(p); err != nil {
				return err
			}
			data = data[4+n:]
		}
		if len(data) == 0 {
			return nil
		}
	}
	f.buf = append(f.buf, data...)
	for len(f.buf) >= 4 {
		n := int(f.buf[0]) | int(f.buf[1])<<8 | int(f.buf[2])<<16
		if len(f.buf) < 4+n {
			return nil
		}
		p := phys{seq: f.buf[3], payload: f.buf[4 : 4+n], raw: f.buf[:4+n], cont: f.cont, more: n == maxPayload}
		f.cont = p.more
		if err := fn(p); err != nil {
			return err
		}
		f.buf = f.buf[4+n:]
	}
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return nil
}

// joiner assembles a logical packet from physical ones, up to max bytes.
type joiner struct {
	max     int
	seq     byte
	payload []byte
	npkts   int
}

// add takes a physical packet; it returns true when the logical packet is
// complete in j.payload.
func (j *joiner) add(p phys) (bool, error) {
	if !p.cont {
		j.seq, j.payload, j.npkts = p.seq, j.payload[:0], 0
	}
	j.payload = append(j.payload, p.payload...)
	j.npkts++
	if len(j.payload) > j.max {
		return false, fmt.Errorf("packet of more than %d bytes", j.max)
	}
	return !p.more, nil
}

// appendPacket appends payload as physical packets starting at seq and
// returns the next sequence id.
func appendPacket(dst, payload []byte, seq byte) ([]byte, byte) {
	for {
		n := min(len(payload), maxPayload)
		dst = append(dst, byte(n), byte(n>>8), byte(n>>16), seq)
		dst = append(dst, payload[:n]...)
		seq++
		payload = payload[n:]
		if n < maxPayload {
			return dst, seq
		}
	}
}

// lenenc reads a length-encoded integer.
func lenenc(b []byte) (v uint64, n int, null bool, ok bool) {
	if len(b) == 0 {
		return 0, 0, false, false
	}
	switch c := b[0]; {
	case c < 0xFB:
		return uint64(c), 1, false, true
	case c == 0xFB:
		return 0, 1, true, true
	case c == 0xFC && len(b) >= 3:
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3, false, true
	case c == 0xFD && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, false, true
	case c == 0xFE && len(b) >= 9:
		return binary.LittleEndian.Uint64(b[1:]), 9, false, true
	}
	return 0, 0, false, false
}

func appendLenenc(dst []byte, v uint64) []byte {
	switch {
	case v < 0xFB:
		return append(dst, byte(v))
	case v < 1<<16:
		return append(dst, 0xFC, byte(v), byte(v>>8))
	case v < 1<<24:
		return append(dst, 0xFD, byte(v), byte(v>>8), byte(v>>16))
	}
	return binary.LittleEndian.AppendUint64(append(dst, 0xFE), v)
}
