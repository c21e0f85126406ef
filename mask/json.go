package mask

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting the JSON masker follows; deeper values
// are masked as a whole.
const maxJSONDepth = 512

var errJSON = errors.New("malformed JSON")

// JSON masks inside a JSON document by rule r: only the keys and elements
// whose rules mask are rewritten, everything else is copied byte for byte,
// and the result stays valid JSON. With detect, content detectors scrub
// every string (keys included) that the rule shows. n counts the masked
// values. A document that is not valid JSON is masked whole (as a JSON
// string), and ok is false.
func (m *Masker) JSON(dst []byte, r *Rule, v []byte, detect bool) (out []byte, n int, ok bool) {
	w := jsonWriter{m: m, src: v, out: dst, detect: detect}
	if detect && bytes.IndexByte(v, '\\') < 0 {
		// Without escapes a string's content is its bytes in the text, so
		// only strings that overlap a detector's find in the whole text
		// need scrubbing.
		w.hits, w.located = spans(v), true
		if r == nil && len(w.hits) == 0 {
			if json.Valid(v) {
				return append(dst, v...), 0, true
			}
			return m.JSONWhole(dst, r), 1, false
		}
	}
	start := len(dst)
	i, err := w.value(0, r, 0)
	if err == nil {
		i = skipSpace(v, i)
		w.out = append(w.out, v[w.copied:i]...)
		if i != len(v) {
			err = errJSON
		}
	}
	if err != nil {
		out = m.JSONWhole(dst[:start], r)
		return out, 1, false
	}
	return w.out, w.n, true
}

// JSONWhole is a whole JSON value masked: a JSON string of the masked
// marker, or null for the null strategy.
func (m *Masker) JSONWhole(dst []byte, r *Rule) []byte {
	if r != nil && r.Strategy == Null {
		return append(dst, "null"...)
	}
	return appendJSONString(dst, []byte(RedactedText))
}

type jsonWriter struct {
	m      *Masker
	src    []byte
	out    []byte
	copied int // src[:copied] is in out (or replaced)
	detect bool
	n      int
	// hits are the detectors' finds in the whole text, when located.
	hits    [][2]int
	located bool
}

// flush copies the source up to i.
func (w *jsonWriter) flush(i int) {
	w.out = append(w.out, w.src[w.copied:i]...)
	w.copied = i
}

// replace puts b in place of src[i:j].
func (w *jsonWriter) replace(i, j int, b []byte) {
	w.flush(i)
	w.out = append(w.out, b...)
	w.copied = j
}

// value handles the value at src[i:] by rule r, returning its end.
func (w *jsonWriter) value(i int, r *Rule, depth int) (int, error) {
	i = skipSpace(w.src, i)
	if i >= len(w.src) {
		return 0, errJSON
	}
	if depth > maxJSONDepth {
		return 0, errJSON
	}
	switch {
	case r == nil || (!r.Mask && len(r.Parts) == 0):
		if w.detect {
			return w.scrub(i, depth)
		}
		return skipValue(w.src, i)
	case r.Shape == JSONLeaf && len(r.Parts) == 1:
		return w.value(i, r.Parts[0], depth+1)
	case (r.Shape == JSONObject || r.Shape == JSONMap) && w.src[i] == '{':
		return w.object(i, r, depth)
	case (r.Shape == JSONArray || r.Shape == Array) && w.src[i] == '[':
		return w.array(i, r, depth)
	case !r.Mask:
		if w.detect {
			return w.scrub(i, depth)
		}
		return skipValue(w.src, i)
	}
	return w.leaf(i, r)
}

func (w *jsonWriter) object(i int, r *Rule, depth int) (int, error) {
	i = skipSpace(w.src, i+1)
	if i < len(w.src) && w.src[i] == '}' {
		return i + 1, nil
	}
	for {
		i = skipSpace(w.src, i)
		if i >= len(w.src) || w.src[i] != '"' {
			return 0, errJSON
		}
		end, err := skipString(w.src, i)
		if err != nil {
			return 0, err
		}
		key, err := stringBytes(w.src[i:end])
		if err != nil {
			return 0, err
		}
		if w.detect {
			w.scrubString(i, end)
		}
		i = skipSpace(w.src, end)
		if i >= len(w.src) || w.src[i] != ':' {
			return 0, errJSON
		}
		sub, known := r.key(key) // no allocation: string(key) in a map lookup
		if !known {
			sub = r.Whole() // a key the analysis did not expect
		}
		if i, err = w.value(i+1, sub, depth+1); err != nil {
			return 0, err
		}
		var done bool
		if i, done, err = w.separator(i, '}'); done || err != nil {
			return i, err
		}
	}
}

// separator reads what follows a member or element: a comma (the next
// one starts after it) or the closing bracket (done, past it).
func (w *jsonWriter) separator(i int, closing byte) (int, bool, error) {
	i = skipSpace(w.src, i)
	switch {
	case i >= len(w.src):
		return 0, true, errJSON
	case w.src[i] == ',':
		return i + 1, false, nil
	case w.src[i] == closing:
		return i + 1, true, nil
	}
	return 0, true, errJSON
}

func (w *jsonWriter) array(i int, r *Rule, depth int) (int, error) {
	i = skipSpace(w.src, i+1)
	if i < len(w.src) && w.src[i] == ']' {
		return i + 1, nil
	}
	for k := 0; ; k++ {
		sub, ok := r.PartAt(k)
		if !ok {
			sub = r.Whole()
		}
		var err error
		if i, err = w.value(i, sub, depth+1); err != nil {
			return 0, err
		}
		var done bool
		if i, done, err = w.separator(i, ']'); done || err != nil {
			return i, err
		}
	}
}

// leaf masks the value at src[i:] as one whole: a string by the text
// strategy, a number or boolean by the typed mask, an object or array
// replaced by the masked marker; null stays null.
func (w *jsonWriter) leaf(i int, r *Rule) (int, error) {
	end, err := skipValue(w.src, i)
	if err != nil {
		return 0, err
	}
	v := w.src[i:end]
	var b []byte
	switch c := v[0]; {
	case c == 'n':
		return end, nil
	case c == '"':
		s, err := stringBytes(v)
		if err != nil {
			return 0, err
		}
		masked, ok := w.m.Text(r.Strategy, r.N, s)
		w.n++
		w.flush(i)
		if !ok {
			w.out = append(w.out, "null"...)
		} else {
			w.out = appendJSONString(w.out, masked)
		}
		w.copied = end
		return end, nil
	case c == 't' || c == 'f':
		b = []byte("null")
		if r.Typed == TypedZero {
			b = []byte("false")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		out, ok := w.m.TypedText(r.Typed, KindDecimal, v)
		b = []byte("null")
		if ok {
			b = out
		}
	default:
		b = w.m.JSONWhole(nil, r)
	}
	w.n++
	w.replace(i, end, b)
	return end, nil
}

// scrub walks a shown value, scrubbing its strings with the detectors.
func (w *jsonWriter) scrub(i int, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, errJSON
	}
	switch w.src[i] {
	case '"':
		end, err := skipString(w.src, i)
		if err != nil {
			return 0, err
		}
		w.scrubString(i, end)
		return end, nil
	case '{', '[':
		closing := byte('}')
		if w.src[i] == '[' {
			closing = ']'
		}
		i = skipSpace(w.src, i+1)
		if i < len(w.src) && w.src[i] == closing {
			return i + 1, nil
		}
		for {
			i = skipSpace(w.src, i)
			if i >= len(w.src) {
				return 0, errJSON
			}
			var err error
			if i, err = w.scrub(i, depth+1); err != nil {
				return 0, err
			}
			i = skipSpace(w.src, i)
			if i >= len(w.src) {
				return 0, errJSON
			}
			switch c := w.src[i]; {
			case c == ',' || (c == ':' && closing == '}'):
				i++
			case c == closing:
				return i + 1, nil
			default:
				return 0, errJSON
			}
		}
	}
	return skipValue(w.src, i)
}

// scrubString runs the detectors over the string token src[i:end].
func (w *jsonWriter) scrubString(i, end int) {
	if w.located && !overlaps(w.hits, i, end) {
		return
	}
	s, err := decodeString(w.src[i:end])
	if err != nil {
		return
	}
	out, n := Scrub([]byte(s))
	if n == 0 {
		return
	}
	w.n += n
	w.replace(i, end, appendJSONString(nil, out))
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value at b[i:], checking its
// syntax as far as finding its end needs.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errJSON
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errJSON
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, nil
	}
	return 0, errJSON
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errJSON
	}
	return i + len(lit), nil
}

// skipString returns the end of the string token starting at b[i] ('"').
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errJSON
}

// stringBytes is a string token's content (quotes included in tok):
// the bytes themselves when there is nothing to decode.
func stringBytes(tok []byte) ([]byte, error) {
	body := tok[1 : len(tok)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body, nil
	}
	s, err := decodeString(tok)
	return []byte(s), err
}

// decodeString decodes a string token (quotes included).
func decodeString(tok []byte) (string, error) {
	if bytes.IndexByte(tok, '\\') < 0 {
		return string(tok[1 : len(tok)-1]), nil
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", errJSON
	}
	return s, nil
}

// appendJSONString appends s as a JSON string token.
func appendJSONString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	for len(s) > 0 {
		c := s[0]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' {
			dst = append(dst, c)
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRune(s)
		s = s[size:]
		switch {
		case r == '"':
			dst = append(dst, '\\', '"')
		case r == '\\':
			dst = append(dst, '\\', '\\')
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&0xF])
		case r == utf8.RuneError:
			dst = append(dst, `\ufffd`...)
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return append(dst, '"')
}

// spans are the detectors' validated finds in v, by start.
func spans(v []byte) [][2]int {
	var out [][2]int
	digits := countDigits(v)
	for _, d := range Detectors {
		if !d.need(v, digits) {
			continue
		}
		for _, loc := range d.re.FindAllIndex(v, -1) {
			if d.valid == nil || d.valid(string(v[loc[0]:loc[1]])) {
				out = append(out, [2]int{loc[0], loc[1]})
			}
		}
	}
	slices.SortFunc(out, func(a, b [2]int) int { return a[0] - b[0] })
	return out
}

// overlaps reports whether any span overlaps [i, end).
func overlaps(hits [][2]int, i, end int) bool {
	k, _ := slices.BinarySearchFunc(hits, i, func(h [2]int, t int) int { return h[0] - t })
	if k > 0 && hits[k-1][1] > i {
		return true
	}
	for ; k < len(hits) && hits[k][0] < end; k++ {
		return true
	}
	return false
}
