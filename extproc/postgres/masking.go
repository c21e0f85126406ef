package postgres

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// textTypes are type OIDs whose values are text in both formats (the binary
// form of text, varchar, bpchar and name is the UTF-8 bytes), so a masked
// string stays a valid value. Masked values of other types become NULL.
var textTypes = map[uint32]bool{25: true, 1043: true, 1042: true, 19: true, 705: true}

// scanTypes are types whose text-format values detectors scan (JSON's
// strings are scanned inside it).
var scanTypes = map[uint32]bool{25: true, 1043: true, 1042: true, 19: true, 705: true, 142: true}

// rowPlan says how to rewrite the rows of one result.
type rowPlan struct {
	masks   map[int]*mask.Rule
	types   []uint32 // per column; 0 unknown
	formats []int16  // per column: 0 text, 1 binary
	detect  bool     // content detectors on
	// copyText: rows are COPY text lines, whose fields are all text.
	copyText bool
	// src is the portal an Execute runs: its column types come from a
	// Describe that may be answered after the Execute was sent.
	src *portal
	// width is the number of columns the analysis placed the masks in
	// (0: not checked).
	width int
}

// misplaced reports a row whose column count is not the one the masks
// were placed for: masking it by index could mask the wrong fields.
func (p *rowPlan) misplaced(f frame) (int, bool) {
	if p == nil || len(p.masks) == 0 || p.width <= 0 || f.piece {
		return 0, false
	}
	n := 0
	switch f.typ {
	case 'D':
		if len(f.body) < 2 {
			return 0, false
		}
		n = int(binary.BigEndian.Uint16(f.body))
	case 'd':
		n = strings.Count(strings.TrimSuffix(string(f.body), "\n"), "\t") + 1
	}
	return n, n != p.width
}

// resolveTypes takes the executed portal's column types and Bind's result
// formats once they are known. Until then a masked value becomes NULL.
func (p *rowPlan) resolveTypes() {
	if p == nil || p.types != nil || p.src == nil {
		return
	}
	if types := p.src.resultTypes(); types != nil {
		p.types = types
		p.formats = resultFormats(p.src.formats, len(types))
	}
}

func (p *rowPlan) active() bool { return p != nil && (len(p.masks) > 0 || p.detect) }

// masked reports whether column i's values are rewritten: masked, or
// scanned by the detectors.
func (p *rowPlan) masked(i int) bool {
	_, ok := p.masks[i]
	return ok || p.detect
}

func newRowPlan(masked []policy.MaskedColumn, width int, detect bool) *rowPlan {
	p := &rowPlan{detect: detect, width: width}
	if len(masked) > 0 {
		p.masks = make(map[int]*mask.Rule, len(masked)) // read only after this
	}
	for _, m := range masked {
		p.masks[m.Index] = m.Rule()
	}
	return p
}

// describe takes column types (and, for the simple protocol, formats) from
// a RowDescription.
func (p *rowPlan) describe(rd *pgproto3.RowDescription, withFormats bool) {
	p.types = make([]uint32, len(rd.Fields))
	for i, f := range rd.Fields {
		p.types[i] = f.DataTypeOID
	}
	if withFormats {
		p.formats = make([]int16, len(rd.Fields))
		for i, f := range rd.Fields {
			p.formats[i] = f.Format
		}
	}
}

// resultFormats expands Bind's result format codes to n columns.
func resultFormats(codes []int16, n int) []int16 {
	out := make([]int16, n)
	switch len(codes) {
	case 0:
	case 1:
		for i := range out {
			out[i] = codes[0]
		}
	default:
		copy(out, codes)
	}
	return out
}

func (p *rowPlan) typeOf(i int) uint32 {
	if p.copyText {
		return 25
	}
	if i < len(p.types) {
		return p.types[i]
	}
	return 0
}

func (p *rowPlan) formatOf(i int) int16 {
	if i < len(p.formats) {
		return p.formats[i]
	}
	return 0
}

// maskStats counts masked values per column, for audit.
type maskStats map[string]int

// maskValue masks one value of column i; it returns nil for NULL.
func (s *Session) maskValue(p *rowPlan, i int, v []byte, stats maskStats) []byte {
	r, masked := p.masks[i]
	typ, format := p.typeOf(i), p.formatOf(i)
	if !masked && !p.detect {
		return v
	}
	vm := valueMasker{m: s.cfg.Masker, detect: p.detect, utf8: s.utf8}
	if masked {
		stats[r.Name]++
		return vm.value(r, typ, format, v)
	}
	out := vm.scan(typ, format, v)
	if vm.n > 0 {
		stats["detector"] += vm.n
	}
	return out
}

// rewriteDataRow masks the values of a DataRow body and returns the whole
// rewritten message appended to dst.
func (s *Session) rewriteDataRow(dst, body []byte, p *rowPlan) ([]byte, error) {
	if len(body) < 2 {
		return nil, &ProtocolError{Msg: "malformed DataRow"}
	}
	n := int(binary.BigEndian.Uint16(body))
	start := len(dst)
	dst = append(dst, 'D', 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	rp := 2
	for i := 0; i < n; i++ {
		if rp+4 > len(body) {
			return nil, &ProtocolError{Msg: "malformed DataRow"}
		}
		l := int(int32(binary.BigEndian.Uint32(body[rp:])))
		rp += 4
		var v []byte
		null := l < 0
		if !null {
			if rp+l > len(body) {
				return nil, &ProtocolError{Msg: "malformed DataRow"}
			}
			v = body[rp : rp+l]
			rp += l
		}
		if !null {
			v = s.maskValue(p, i, v, s.stats)
			null = v == nil
		}
		if null {
			dst = binary.BigEndian.AppendUint32(dst, 0xFFFFFFFF)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst, nil
}

// rewriteCopyRow masks one row of text-format COPY data: tab-separated
// fields, \N for NULL, one row per CopyData message.
func (s *Session) rewriteCopyRow(dst, body []byte, p *rowPlan) []byte {
	start := len(dst)
	dst = append(dst, 'd', 0, 0, 0, 0)
	line := strings.TrimSuffix(string(body), "\n")
	fields := strings.Split(line, "\t")
	for i, f := range fields {
		if i > 0 {
			dst = append(dst, '\t')
		}
		if f == `\N` {
			dst = append(dst, f...)
			continue
		}
		if !p.masked(i) {
			dst = append(dst, f...) // as the server escaped it
			continue
		}
		v := s.maskValue(p, i, copyUnescape(f), s.stats)
		if v == nil {
			dst = append(dst, `\N`...)
			continue
		}
		dst = append(dst, copyEscape(v)...)
	}
	if strings.HasSuffix(string(body), "\n") {
		dst = append(dst, '\n')
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// copyUnescape is a COPY text field's value: the server escapes
// backslashes, control characters and the delimiter with a backslash. A
// structured value is read only unescaped: {"\"",x} is sent as
// {"\\"",x}, whose first element, read as it is, would run to the end.
func copyUnescape(f string) []byte {
	if strings.IndexByte(f, '\\') < 0 {
		return []byte(f)
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == '\\' && i+1 < len(f) {
			i++
			c = f[i]
			switch c {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'v':
				c = '\v'
			}
		}
		out = append(out, c)
	}
	return out
}

// copyEscaper escapes what a masked value might introduce into COPY text.
var copyEscaper = strings.NewReplacer("\\", "\\\\", "\t", "\\t", "\n", "\\n", "\r", "\\r", "\b", "\\b", "\f", "\\f", "\v", "\\v")

func copyEscape(v []byte) string { return copyEscaper.Replace(string(v)) }

// Close reports the session's masking counts.
func (s *Session) Close() { s.logMasking() }

func (s *Session) logMasking() {
	if len(s.stats) > 0 {
		s.log.Info("values masked", "counts", fmt.Sprint(map[string]int(s.stats)))
	}
}
