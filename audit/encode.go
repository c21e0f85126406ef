package audit

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends e as encoding/json would encode it, without
// reflection: an event is encoded for every statement on the audit worker,
// where json.Marshal was most of its cost. TestAppendJSONMatchesMarshal
// holds the two to the same bytes.
func (e *Event) appendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = appendField(b, "session", e.Session)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "kind", e.Kind)
	b = appendField(b, "agent", e.Agent)
	b = appendOptional(b, "acting_for", e.ActingFor)
	b = appendField(b, "target", e.Target)
	b = appendOptional(b, "statement", e.Statement)
	b = appendOptional(b, "fingerprint", e.Fingerprint)
	b = appendOptional(b, "decision", e.Decision)
	b = appendOptional(b, "reason", e.Reason)
	b = appendStrings(b, "policies", e.Policies)
	b = appendStrings(b, "masked_columns", e.Masked)
	if e.Rows != 0 {
		b = append(b, `,"rows":`...)
		b = strconv.AppendInt(b, e.Rows, 10)
	}
	if e.LatencyMS != 0 {
		b = append(b, `,"latency_ms":`...)
		b = appendFloat(b, e.LatencyMS)
	}
	b = appendOptional(b, "error", e.Error)
	b = appendOptional(b, "by", e.By)
	if r := e.Result; r != nil {
		b = append(b, `,"result":{`...)
		n := len(b)
		if len(r.Columns) > 0 {
			b = appendStrings(b, "columns", r.Columns)
		}
		if len(r.Rows) > 0 {
			b = append(b, `,"rows":[`...)
			for i, row := range r.Rows {
				if i > 0 {
					b = append(b, ',')
				}
				if row == nil {
					b = append(b, "null"...)
					continue
				}
				b = append(b, '[')
				for j, v := range row {
					if j > 0 {
						b = append(b, ',')
					}
					if v == nil {
						b = append(b, "null"...)
					} else {
						b = appendString(b, *v)
					}
				}
				b = append(b, ']')
			}
			b = append(b, ']')
		}
		if r.Truncated {
			b = append(b, `,"truncated":true`...)
		}
		if len(b) > n {
			b = slices.Delete(b, n, n+1) // the first field's comma
		}
		b = append(b, '}')
	}
	b = appendStrings(b, "groups", e.Groups)
	b = appendObject(b, "client", e.Client, appendString)
	b = appendOptional(b, "instance", e.Instance)
	if e.BytesIn != 0 {
		b = append(b, `,"bytes_from_client":`...)
		b = strconv.AppendInt(b, e.BytesIn, 10)
	}
	if e.BytesOut != 0 {
		b = append(b, `,"bytes_to_client":`...)
		b = strconv.AppendInt(b, e.BytesOut, 10)
	}
	b = appendObject(b, "masked_values", e.MaskedCount, func(b []byte, v int) []byte { return strconv.AppendInt(b, int64(v), 10) })
	b = appendField(b, "prev", e.Prev)
	b = appendField(b, "hash", e.Hash)
	return append(b, '}')
}

// appendObject writes a map as encoding/json does: keys sorted.
func appendObject[V any](b []byte, name string, m map[string]V, value func([]byte, V) []byte) []byte {
	if len(m) == 0 {
		return b
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(appendKey(b, name), '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = value(b, m[k])
	}
	return append(b, '}')
}

// appendKey writes `,"name":` (every field follows "v").
func appendKey(b []byte, name string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendField(b []byte, name, v string) []byte {
	return appendString(appendKey(b, name), v)
}

func appendOptional(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

func appendStrings(b []byte, name string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(appendKey(b, name), '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

// appendString copies plain printable ASCII as is and leaves any other
// string to encoding/json, whose escaping (HTML characters, control
// characters, U+2028/9, invalid UTF-8) it must match.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendFloat formats like encoding/json: shortest representation, in
// exponent form only for very small or large magnitudes.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0') // json.Marshal refuses these; latencies are finite
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
