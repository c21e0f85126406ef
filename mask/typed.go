package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kind is what a non-text value is, for typed masks.
type Kind uint8

const (
	KindOther     Kind = iota // no typed mask: NULL
	KindInt                   // integers
	KindFloat                 // floating point
	KindDecimal               // exact decimals (numeric, DECIMAL)
	KindDate                  // a calendar date
	KindTimestamp             // a date and time (with or without a zone)
	KindUUID                  // a UUID
	KindBool                  // a boolean
)

// Epoch is what TypedZero makes of a date or time.
var Epoch = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// tokenOf is a keyed digest of v for deterministic tokens; ok is false
// without a key (a token would then be guessable).
func (m *Masker) tokenOf(v []byte) ([]byte, bool) {
	if len(m.key) == 0 {
		return nil, false
	}
	h := hmac.New(sha256.New, m.key)
	h.Write(v)
	return h.Sum(nil), true
}

// Int masks an integer of the given width in bits.
func (m *Masker) Int(t Typed, v int64, bits int) (int64, bool) {
	switch t {
	case TypedZero:
		return 0, true
	case TypedBucket:
		return bucketInt(v), true
	case TypedToken:
		sum, ok := m.tokenOf(strconv.AppendInt(nil, v, 10))
		if !ok {
			return 0, false
		}
		return int64(binary.BigEndian.Uint64(sum) >> (65 - min(bits, 64))), true
	}
	return 0, false
}

// bucketInt keeps the leading digit: 12345 → 10000, -87 → -80.
func bucketInt(v int64) int64 {
	p := int64(1)
	a := v
	if a < 0 {
		a = -a
	}
	for a >= 10 {
		a /= 10
		p *= 10
	}
	if v < 0 {
		return -a * p
	}
	return a * p
}

// Float masks a floating-point number.
func (m *Masker) Float(t Typed, v float64) (float64, bool) {
	switch t {
	case TypedZero:
		return 0, true
	case TypedBucket:
		s, ok := bucketDecimal(strconv.FormatFloat(v, 'f', -1, 64))
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(s, 64)
		return f, err == nil
	case TypedToken:
		n, ok := m.Int(TypedToken, int64(v*1e6), 32)
		return float64(n), ok
	}
	return 0, false
}

// Decimal masks the text of an exact decimal ("-123.45").
func (m *Masker) Decimal(t Typed, s string) (string, bool) {
	if !isDecimal(s) {
		return "", false // NaN, Infinity, or not a number at all
	}
	switch t {
	case TypedZero:
		return "0", true
	case TypedBucket:
		return bucketDecimal(s)
	case TypedToken:
		sum, ok := m.tokenOf([]byte(s))
		if !ok {
			return "", false
		}
		return strconv.FormatUint(binary.BigEndian.Uint64(sum)%1_000_000_000, 10), true
	}
	return "", false
}

func isDecimal(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// bucketDecimal keeps the leading significant digit of a decimal in
// place: 12345.67 → 10000, -0.0345 → -0.03, 0.00 → 0.
func bucketDecimal(s string) (string, bool) {
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return "", false
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if !isDecimal(s) {
		return "", false
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+"), "0")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case intPart != "":
		b.WriteByte(intPart[0])
		b.WriteString(strings.Repeat("0", len(intPart)-1))
	default:
		lead := strings.IndexFunc(frac, func(r rune) bool { return r != '0' })
		if lead < 0 {
			return "0", true
		}
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", lead))
		b.WriteByte(frac[lead])
	}
	return b.String(), true
}

// Time masks a date or timestamp: zero is the Unix epoch, bucket the
// first instant of its year (in its own zone).
func (m *Masker) Time(t Typed, v time.Time) (time.Time, bool) {
	switch t {
	case TypedZero:
		return Epoch.In(v.Location()), true
	case TypedBucket:
		return time.Date(v.Year(), 1, 1, 0, 0, 0, 0, v.Location()), true
	}
	return time.Time{}, false
}

// UUID masks a UUID: zero and bucket are the nil UUID, token a
// deterministic version 8 UUID keyed like text tokens.
func (m *Masker) UUID(t Typed, v [16]byte) ([16]byte, bool) {
	switch t {
	case TypedZero, TypedBucket:
		return [16]byte{}, true
	case TypedToken:
		sum, ok := m.tokenOf(v[:])
		if !ok {
			return [16]byte{}, false
		}
		var u [16]byte
		copy(u[:], sum)
		u[6] = u[6]&0x0F | 0x80 // version 8: custom
		u[8] = u[8]&0x3F | 0x80 // RFC 9562 variant
		return u, true
	}
	return [16]byte{}, false
}

// Bool masks a boolean: zero is false.
func (m *Masker) Bool(t Typed) (bool, bool) { return false, t == TypedZero }

// TypedText masks the text form of a non-text value of kind k, as
// PostgreSQL and MySQL print them in text results (ISO dates). ok is
// false for NULL: the value is not of its kind's form, or the mask is
// null.
func (m *Masker) TypedText(t Typed, k Kind, v []byte) ([]byte, bool) {
	if t == TypedNull || t == "" {
		return nil, false
	}
	s := string(v)
	switch k {
	case KindInt, KindDecimal, KindFloat:
		if k == KindInt {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				out, ok := m.Int(t, n, 63)
				return strconv.AppendInt(nil, out, 10), ok
			}
		}
		out, ok := m.Decimal(t, s)
		return []byte(out), ok
	case KindDate, KindTimestamp:
		return m.timeText(t, s)
	case KindUUID:
		u, ok := parseUUID(s)
		if !ok {
			return nil, false
		}
		out, ok := m.UUID(t, u)
		return []byte(FormatUUID(out)), ok
	case KindBool:
		_, ok := m.Bool(t)
		return []byte("f"), ok
	}
	return nil, false
}

// timeText masks "YYYY-MM-DD[ HH:MM:SS[.frac]][zone]" keeping the zone
// suffix as written. Other forms (BC dates, infinity, other DateStyles)
// become NULL.
func (m *Masker) timeText(t Typed, s string) ([]byte, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return nil, false
	}
	d, err := time.Parse("2006-01-02", s[:10])
	if err != nil {
		return nil, false
	}
	rest := s[10:]
	zone := ""
	hasTime := false
	if strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "T") {
		hasTime = true
		clock := rest[1:]
		end := strings.IndexAny(clock, "+-Z ")
		if end >= 0 {
			zone = clock[end:]
			clock = clock[:end]
		}
		if _, err := time.Parse("15:04:05", strings.SplitN(clock, ".", 2)[0]); err != nil {
			return nil, false
		}
		if strings.Contains(zone, "BC") {
			return nil, false
		}
	} else if rest != "" {
		return nil, false
	}
	out, ok := m.Time(t, d)
	if !ok {
		return nil, false
	}
	b := out.AppendFormat(nil, "2006-01-02")
	if hasTime {
		b = append(b, " 00:00:00"...)
		b = append(b, zone...)
	}
	return b, true
}

func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	s = strings.ReplaceAll(strings.Trim(s, "{}"), "-", "")
	if len(s) != 32 {
		return u, false
	}
	for i := range 16 {
		n, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return u, false
		}
		u[i] = byte(n)
	}
	return u, true
}

// FormatUUID prints a UUID in its canonical text form.
func FormatUUID(u [16]byte) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xF])
	}
	return string(b)
}

// IntBytes masks a binary integer of 1, 2, 4 or 8 bytes in the given byte
// order (PostgreSQL's big-endian, MySQL's little-endian); nil is NULL.
func (m *Masker) IntBytes(t Typed, v []byte, order binary.ByteOrder) []byte {
	var n int64
	switch len(v) {
	case 1:
		n = int64(int8(v[0]))
	case 2:
		n = int64(int16(order.Uint16(v)))
	case 4:
		n = int64(int32(order.Uint32(v)))
	case 8:
		n = int64(order.Uint64(v))
	default:
		return nil
	}
	out, ok := m.Int(t, n, 8*len(v)-1)
	if !ok {
		return nil
	}
	b := make([]byte, len(v))
	switch len(v) {
	case 1:
		b[0] = byte(out)
	case 2:
		order.PutUint16(b, uint16(out))
	case 4:
		order.PutUint32(b, uint32(out))
	default:
		order.PutUint64(b, uint64(out))
	}
	return b
}

// FloatBytes masks a binary IEEE float of 4 or 8 bytes; nil is NULL.
func (m *Masker) FloatBytes(t Typed, v []byte, order binary.ByteOrder) []byte {
	var f float64
	switch len(v) {
	case 4:
		f = float64(math.Float32frombits(order.Uint32(v)))
	case 8:
		f = math.Float64frombits(order.Uint64(v))
	default:
		return nil
	}
	out, ok := m.Float(t, f)
	if !ok {
		return nil
	}
	b := make([]byte, len(v))
	if len(v) == 4 {
		order.PutUint32(b, math.Float32bits(float32(out)))
	} else {
		order.PutUint64(b, math.Float64bits(out))
	}
	return b
}
