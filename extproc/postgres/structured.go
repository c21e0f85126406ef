package postgres

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sluicedb/sluice/mask"
)

// Type OIDs the masker knows.
const (
	oidJSON        = 114
	oidJSONB       = 3802
	oidRecord      = 2249
	oidBool        = 16
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidFloat4      = 700
	oidFloat8      = 701
	oidNumeric     = 1700
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidUUID        = 2950
	oidText        = 25
)

// arrayElems maps array types to their element types.
var arrayElems = map[uint32]uint32{
	1000: oidBool, 1005: oidInt2, 1007: oidInt4, 1016: oidInt8, 1021: oidFloat4, 1022: oidFloat8,
	1231: oidNumeric, 1182: oidDate, 1115: oidTimestamp, 1185: oidTimestampTZ, 2951: oidUUID,
	1009: oidText, 1015: 1043, 1014: 1042, 1003: 19, 199: oidJSON, 3807: oidJSONB, 2287: oidRecord,
}

// kindOf is the typed-mask kind of a type.
func kindOf(oid uint32) mask.Kind {
	switch oid {
	case oidInt2, oidInt4, oidInt8:
		return mask.KindInt
	case oidFloat4, oidFloat8:
		return mask.KindFloat
	case oidNumeric:
		return mask.KindDecimal
	case oidDate:
		return mask.KindDate
	case oidTimestamp, oidTimestampTZ:
		return mask.KindTimestamp
	case oidUUID:
		return mask.KindUUID
	case oidBool:
		return mask.KindBool
	}
	return mask.KindOther
}

var errShape = errors.New("value does not have the planned shape")

// valueMasker masks one PostgreSQL value by a rule, in either format.
type valueMasker struct {
	m      *mask.Masker
	detect bool
	n      int // values masked inside structures
	// utf8: the client encoding is UTF-8. In another, a non-ASCII key
	// comes back in it — and sluice read the statement as UTF-8, so the
	// server may make one key of two sluice told apart (U&'\00c3\00a9'
	// and 'é' are both "Ã©" to a LATIN1 client): such a plan is applied
	// whole.
	utf8 bool
}

// value masks v (a value of type oid in format) by r; nil means NULL.
func (vm *valueMasker) value(r *mask.Rule, oid uint32, format int16, v []byte) []byte {
	if r.Structured() {
		if out, err := vm.structured(r, oid, format, v); err == nil {
			return out
		}
	}
	return vm.whole(r, oid, format, v)
}

// structured masks inside a JSON, composite or array value.
func (vm *valueMasker) structured(r *mask.Rule, oid uint32, format int16, v []byte) ([]byte, error) {
	switch r.Shape {
	case mask.JSONLeaf, mask.JSONObject, mask.JSONMap, mask.JSONArray:
		if oid != oidJSON && oid != oidJSONB && !textTypes[oid] {
			return nil, errShape
		}
		if !vm.utf8 && !r.ASCIIKeys() {
			return nil, errShape
		}
		out := make([]byte, 0, len(v)+16)
		if oid == oidJSONB && format == 1 {
			if len(v) == 0 || v[0] != 1 {
				return nil, errShape
			}
			out, v = append(out, 1), v[1:]
		}
		out, n, ok := vm.m.JSON(out, r, v, vm.detect)
		if !ok {
			return nil, errShape
		}
		vm.n += n
		return out, nil
	case mask.Record:
		if format == 1 {
			return vm.recordBinary(r, v)
		}
		return vm.recordText(r, v)
	case mask.Array:
		if format == 1 {
			return vm.arrayBinary(r, v)
		}
		return vm.arrayText(r, oid, v)
	}
	return nil, errShape
}

// whole masks a value as one: text by the strategy, JSON as a JSON
// string, numbers, dates and UUIDs by the typed mask; anything else is
// NULL.
func (vm *valueMasker) whole(r *mask.Rule, oid uint32, format int16, v []byte) []byte {
	switch {
	case textTypes[oid]:
		out, ok := vm.m.Text(r.Strategy, r.N, v)
		if !ok {
			return nil
		}
		return out
	case oid == oidJSON || oid == oidJSONB:
		var out []byte
		if oid == oidJSONB && format == 1 {
			out = append(out, 1)
		}
		if r.Strategy == mask.Null {
			return nil
		}
		return vm.m.JSONWhole(out, r)
	}
	k := kindOf(oid)
	if k == mask.KindOther {
		return nil
	}
	if format == 0 {
		out, ok := vm.m.TypedText(r.Typed, k, v)
		if !ok {
			return nil
		}
		return out
	}
	return vm.typedBinary(r.Typed, oid, v)
}

// pgEpoch is where PostgreSQL's binary dates and timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// typedBinary masks a binary-format number, date, timestamp or UUID.
func (vm *valueMasker) typedBinary(t mask.Typed, oid uint32, v []byte) []byte {
	m := vm.m
	switch oid {
	case oidInt2, oidInt4, oidInt8:
		if len(v) == 1 {
			return nil // not a PostgreSQL integer
		}
		return m.IntBytes(t, v, binary.BigEndian)
	case oidFloat4, oidFloat8:
		return m.FloatBytes(t, v, binary.BigEndian)
	case oidNumeric:
		s, ok := numericText(v)
		if !ok {
			return nil
		}
		out, ok := m.Decimal(t, s)
		if !ok {
			return nil
		}
		return numericBinary(out)
	case oidDate:
		if len(v) != 4 {
			return nil
		}
		days := int32(binary.BigEndian.Uint32(v))
		if days == math.MaxInt32 || days == math.MinInt32 {
			return nil // infinity
		}
		out, ok := m.Time(t, pgEpoch.AddDate(0, 0, int(days)))
		if !ok {
			return nil
		}
		return binary.BigEndian.AppendUint32(nil, uint32(int32(out.Sub(pgEpoch).Hours()/24)))
	case oidTimestamp, oidTimestampTZ:
		if len(v) != 8 {
			return nil
		}
		us := int64(binary.BigEndian.Uint64(v))
		if us == math.MaxInt64 || us == math.MinInt64 {
			return nil
		}
		out, ok := m.Time(t, pgEpoch.Add(time.Duration(us)*time.Microsecond))
		if !ok {
			return nil
		}
		return binary.BigEndian.AppendUint64(nil, uint64(out.Sub(pgEpoch).Microseconds()))
	case oidUUID:
		if len(v) != 16 {
			return nil
		}
		out, ok := m.UUID(t, [16]byte(v))
		if !ok {
			return nil
		}
		return out[:]
	case oidBool:
		if _, ok := m.Bool(t); ok {
			return []byte{0}
		}
	}
	return nil
}

// numericText decodes a binary numeric to its text; NaN and infinities
// are not decimals.
func numericText(v []byte) (string, bool) {
	if len(v) < 8 {
		return "", false
	}
	ndigits := int(binary.BigEndian.Uint16(v))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	sign := binary.BigEndian.Uint16(v[4:])
	dscale := int(binary.BigEndian.Uint16(v[6:]))
	if len(v) != 8+2*ndigits || (sign != 0 && sign != 0x4000) {
		return "", false
	}
	var b strings.Builder
	if sign == 0x4000 {
		b.WriteByte('-')
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(v[8+2*i:]))
	}
	if weight < 0 {
		b.WriteByte('0')
	}
	for i := 0; i <= weight; i++ {
		d := strconv.Itoa(digit(i))
		if i > 0 {
			d = strings.Repeat("0", 4-len(d)) + d
		}
		b.WriteString(d)
	}
	if dscale > 0 {
		b.WriteByte('.')
		var frac strings.Builder
		for i := weight + 1; frac.Len() < dscale; i++ {
			d := strconv.Itoa(digit(i))
			frac.WriteString(strings.Repeat("0", 4-len(d)) + d)
		}
		b.WriteString(frac.String()[:dscale])
	}
	return b.String(), true
}

// numericBinary encodes a decimal's text ("-123.4500") as a binary
// numeric.
func numericBinary(s string) []byte {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	intPart = strings.TrimLeft(intPart, "0")
	dscale := len(frac)
	// Pad to whole base-10000 digits on both sides of the point.
	if r := len(intPart) % 4; r != 0 {
		intPart = strings.Repeat("0", 4-r) + intPart
	}
	if r := len(frac) % 4; r != 0 {
		frac += strings.Repeat("0", 4-r)
	}
	all := intPart + frac
	weight := len(intPart)/4 - 1
	var digits []uint16
	for i := 0; i < len(all); i += 4 {
		n, _ := strconv.Atoi(all[i : i+4])
		digits = append(digits, uint16(n))
	}
	// Strip leading and trailing zero digits.
	for len(digits) > 0 && digits[0] == 0 {
		digits, weight = digits[1:], weight-1
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		weight, neg = 0, false
	}
	out := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
	out = binary.BigEndian.AppendUint16(out, uint16(int16(weight)))
	sign := uint16(0)
	if neg {
		sign = 0x4000
	}
	out = binary.BigEndian.AppendUint16(out, sign)
	out = binary.BigEndian.AppendUint16(out, uint16(dscale))
	for _, d := range digits {
		out = binary.BigEndian.AppendUint16(out, d)
	}
	return out
}

// recordBinary masks the fields of a binary composite: field count, then
// per field its type, length (-1 NULL) and value.
func (vm *valueMasker) recordBinary(r *mask.Rule, v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, errShape
	}
	n := int(int32(binary.BigEndian.Uint32(v)))
	if n != len(r.Parts) {
		return nil, errShape
	}
	out := append([]byte(nil), v[:4]...)
	p := 4
	for i := range n {
		if len(v) < p+8 {
			return nil, errShape
		}
		oid := binary.BigEndian.Uint32(v[p:])
		l := int(int32(binary.BigEndian.Uint32(v[p+4:])))
		p += 8
		out = binary.BigEndian.AppendUint32(out, oid)
		if l < 0 {
			out = binary.BigEndian.AppendUint32(out, 0xFFFFFFFF)
			continue
		}
		if len(v) < p+l {
			return nil, errShape
		}
		out, _ = vm.appendPart(out, r.Parts[i], oid, v[p:p+l])
		p += l
	}
	if p != len(v) {
		return nil, errShape
	}
	return out, nil
}

// appendPart appends one binary field or element (its length, then its
// bytes) as sub plans it: masked, scanned by the detectors, or as is.
// null reports a masked value that became NULL.
func (vm *valueMasker) appendPart(out []byte, sub *mask.Rule, oid uint32, v []byte) (_ []byte, null bool) {
	if sub.Mask {
		vm.n++
		if v = vm.value(sub, oid, 1, v); v == nil {
			return binary.BigEndian.AppendUint32(out, 0xFFFFFFFF), true
		}
	} else if vm.detect {
		v = vm.scan(oid, 1, v)
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
	return append(out, v...), false
}

// arrayBinary masks the elements of a one-dimensional binary array:
// dimensions, a has-NULL flag, the element type, each dimension's length
// and lower bound, then the elements.
func (vm *valueMasker) arrayBinary(r *mask.Rule, v []byte) ([]byte, error) {
	if len(v) < 12 {
		return nil, errShape
	}
	ndim := binary.BigEndian.Uint32(v)
	elem := binary.BigEndian.Uint32(v[8:])
	if ndim == 0 {
		return v, nil
	}
	if ndim != 1 || len(v) < 20 {
		return nil, errShape
	}
	count := int(int32(binary.BigEndian.Uint32(v[12:])))
	out := append([]byte(nil), v[:20]...)
	p := 20
	for i := range count {
		if len(v) < p+4 {
			return nil, errShape
		}
		l := int(int32(binary.BigEndian.Uint32(v[p:])))
		p += 4
		if l < 0 {
			out = binary.BigEndian.AppendUint32(out, 0xFFFFFFFF)
			continue
		}
		if len(v) < p+l {
			return nil, errShape
		}
		sub, ok := r.PartAt(i)
		if !ok {
			return nil, errShape
		}
		var null bool
		if out, null = vm.appendPart(out, sub, elem, v[p:p+l]); null {
			binary.BigEndian.PutUint32(out[4:], 1) // has NULLs
		}
		p += l
	}
	if p != len(v) {
		return nil, errShape
	}
	return out, nil
}

// recordText masks the fields of a composite's text form:
// (a,"b c",,"d""e") — an empty field is NULL.
func (vm *valueMasker) recordText(r *mask.Rule, v []byte) ([]byte, error) {
	if len(v) < 2 || v[0] != '(' || v[len(v)-1] != ')' {
		return nil, errShape
	}
	out := []byte{'('}
	p := 1
	for i := 0; ; i++ {
		start := p
		var field []byte
		quoted := false
		for p < len(v)-1 && v[p] != ',' {
			switch v[p] {
			case '"':
				quoted = true
				p++
				for p < len(v)-1 {
					if v[p] == '\\' && p+1 < len(v)-1 {
						field = append(field, v[p+1])
						p += 2
						continue
					}
					if v[p] == '"' {
						if v[p+1] == '"' {
							field = append(field, '"')
							p += 2
							continue
						}
						break
					}
					field = append(field, v[p])
					p++
				}
				if v[p] != '"' {
					return nil, errShape
				}
				p++
			case '\\':
				if p+1 >= len(v)-1 {
					return nil, errShape
				}
				field = append(field, v[p+1])
				p += 2
			default:
				field = append(field, v[p])
				p++
			}
		}
		if i >= len(r.Parts) {
			return nil, errShape
		}
		raw := v[start:p]
		null := len(raw) == 0 && !quoted
		switch sub := r.Parts[i]; {
		case null:
		case sub.Mask:
			vm.n++
			if masked := vm.value(sub, oidText, 0, field); masked != nil {
				out = appendRecordField(out, masked)
			}
		case vm.detect:
			if scrubbed, n := mask.Scrub(field); n > 0 {
				vm.n += n
				out = appendRecordField(out, scrubbed)
			} else {
				out = append(out, raw...)
			}
		default:
			out = append(out, raw...)
		}
		if p == len(v)-1 {
			if i != len(r.Parts)-1 {
				return nil, errShape
			}
			return append(out, ')'), nil
		}
		out = append(out, ',')
		p++
	}
}

// appendRecordField quotes a composite field, doubling quotes and
// backslashes as record_out does.
func appendRecordField(dst, f []byte) []byte {
	dst = append(dst, '"')
	for _, c := range f {
		if c == '"' || c == '\\' {
			dst = append(dst, c)
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// arrayText masks the elements of a one-dimensional array's text form:
// {a,"b c",NULL}, possibly after bounds ([0:1]=).
func (vm *valueMasker) arrayText(r *mask.Rule, oid uint32, v []byte) ([]byte, error) {
	elem := arrayElems[oid]
	if elem == 0 {
		elem = oidText
	}
	p := 0
	if len(v) > 0 && v[0] == '[' {
		eq := strings.IndexByte(string(v), '=')
		if eq < 0 {
			return nil, errShape
		}
		p = eq + 1
	}
	if len(v) < p+2 || v[p] != '{' || v[len(v)-1] != '}' {
		return nil, errShape
	}
	out := append([]byte(nil), v[:p+1]...)
	p++
	if p == len(v)-1 {
		return append(out, '}'), nil
	}
	for i := 0; ; i++ {
		start := p
		var e []byte
		quoted := false
		for p < len(v)-1 && v[p] != ',' {
			switch v[p] {
			case '{':
				return nil, errShape // more than one dimension
			case '"':
				quoted = true
				p++
				for p < len(v)-1 && v[p] != '"' {
					if v[p] == '\\' {
						p++
					}
					e = append(e, v[p])
					p++
				}
				if p >= len(v)-1 {
					return nil, errShape
				}
				p++
			case '\\':
				if p+1 >= len(v)-1 {
					return nil, errShape
				}
				e = append(e, v[p+1])
				p += 2
			default:
				e = append(e, v[p])
				p++
			}
		}
		raw := v[start:p]
		null := !quoted && strings.EqualFold(strings.TrimSpace(string(raw)), "NULL")
		if !quoted {
			e = []byte(strings.TrimSpace(string(e)))
		}
		sub, ok := r.PartAt(i)
		if !ok {
			return nil, errShape
		}
		switch {
		case null:
			out = append(out, raw...)
		case sub.Mask:
			vm.n++
			if masked := vm.value(sub, elem, 0, e); masked != nil {
				out = appendArrayElem(out, masked)
			} else {
				out = append(out, "NULL"...)
			}
		case vm.detect:
			if scrubbed, n := mask.Scrub(e); n > 0 && textTypes[elem] {
				vm.n += n
				out = appendArrayElem(out, scrubbed)
			} else {
				out = append(out, raw...)
			}
		default:
			out = append(out, raw...)
		}
		if p == len(v)-1 {
			return append(out, '}'), nil
		}
		out = append(out, ',')
		p++
	}
}

// appendArrayElem quotes an array element, escaping quotes and
// backslashes.
func appendArrayElem(dst, e []byte) []byte {
	dst = append(dst, '"')
	for _, c := range e {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// scan runs the detectors over a shown value: text and JSON in either
// format (JSON's strings only, so it stays valid).
func (vm *valueMasker) scan(oid uint32, format int16, v []byte) []byte {
	switch {
	case oid == oidJSON || oid == oidJSONB:
		var prefix []byte
		body := v
		if oid == oidJSONB && format == 1 {
			if len(v) == 0 {
				return v
			}
			prefix, body = v[:1:1], v[1:]
		}
		out, n, _ := vm.m.JSON(append([]byte(nil), prefix...), nil, body, true)
		vm.n += n
		return out
	case scanTypes[oid] && (format == 0 || textTypes[oid]):
		out, n := mask.Scrub(v)
		vm.n += n
		return out
	}
	return v
}
