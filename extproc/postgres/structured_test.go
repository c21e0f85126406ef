package postgres

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// copyRow masks one COPY text line by masked, as the session does.
func copyRow(t *testing.T, masked []policy.MaskedColumn, line string) string {
	t.Helper()
	s := NewSession(Config{Masker: mask.New([]byte("key"))})
	p := newRowPlan(masked, strings.Count(line, "\t")+1, false)
	p.copyText = true
	out := s.rewriteCopyRow(nil, []byte(line), p)
	return string(out[5:]) // after the CopyData header
}

// COPY text escapes backslashes: a field is unescaped before its structure
// is read. Read as it is, the array {"\"",alice@example.com,"\""} (sent as
// {"\\"",alice@example.com,"\\""}) was one element — its first, shown —
// and the email went out unmasked.
func TestCopyFieldsUnescapedBeforeMasking(t *testing.T) {
	array := []policy.MaskedColumn{{Index: 1, Name: "array", Strategy: "redact", Shape: policy.ShapeArray,
		Parts: []policy.MaskedColumn{{}, {Strategy: "email"}, {}}}}
	got := copyRow(t, array, "7\t{\"\\\\\"\",alice@example.com,\"\\\\\"\"}\n")
	if want := "7\t{\"\\\\\"\",\"a***@example.com\",\"\\\\\"\"}\n"; got != want {
		t.Errorf("array in COPY:\n got %s\nwant %s", got, want)
	}

	// The JSON ["a\"b", "alice@example.com"] (sent with \\" for \"): the
	// shown element stays as it was, the email is masked.
	doc := []policy.MaskedColumn{{Index: 0, Name: "j", Strategy: "redact", Shape: policy.ShapeJSONArray,
		Parts: []policy.MaskedColumn{{}, {Strategy: "email"}}}}
	got = copyRow(t, doc, `["a\\"b", "alice@example.com"]`+"\n")
	if want := `["a\\"b", "a***@example.com"]` + "\n"; got != want {
		t.Errorf("JSON in COPY:\n got %s\nwant %s", got, want)
	}

	// A field that is not masked comes back as the server sent it, not
	// escaped a second time.
	scalar := []policy.MaskedColumn{{Index: 0, Name: "email", Strategy: "email"}}
	got = copyRow(t, scalar, "alice@example.com\ta\\tb\\\\c\n")
	if want := "a***@example.com\ta\\tb\\\\c\n"; got != want {
		t.Errorf("scalar row in COPY:\n got %q\nwant %q", got, want)
	}
}

// The text forms of records and arrays, as record_out and array_out write
// them, are read field by field: quoting, escapes, NULL and nesting.
func TestStructuredTextForms(t *testing.T) {
	vm := valueMasker{m: mask.New([]byte("key"))}
	show := policy.MaskedColumn{}
	email := policy.MaskedColumn{Strategy: "email"}
	rec := func(parts ...policy.MaskedColumn) *mask.Rule {
		return policy.MaskedColumn{Strategy: "redact", Shape: policy.ShapeRecord, Parts: parts}.Rule()
	}
	arr := func(parts ...policy.MaskedColumn) *mask.Rule {
		return policy.MaskedColumn{Strategy: "redact", Shape: policy.ShapeArray, Parts: parts}.Rule()
	}
	for _, tc := range []struct {
		r       *mask.Rule
		oid     uint32
		in, out string
	}{
		{rec(show, email), oidRecord, `(Alice,alice@example.com)`, `(Alice,"a***@example.com")`},
		{rec(show, email), oidRecord, `("a ""quoted"", (b)",bob@example.com)`, `("a ""quoted"", (b)","b***@example.com")`},
		{rec(show, email), oidRecord, `("x\\",bob@example.com)`, `("x\\","b***@example.com")`},
		{rec(show, email), oidRecord, `(,)`, `(,)`},
		{rec(show, email), oidRecord, `(Alice,alice@example.com,3)`, ``}, // another width: NULL
		{arr(show, email), 1009, `{"a \"b\"",alice@example.com}`, `{"a \"b\"","a***@example.com"}`},
		{arr(show, email), 1009, `{NULL,NULL}`, `{NULL,NULL}`},
		{arr(show, email), 1009, `{"NULL",x@y.z}`, `{"NULL","x***@y.z"}`},
		{arr(show, email), 1009, `{a,b@c.d,e}`, ``}, // more elements than planned: NULL
		{arr(show, email), 1009, `{{a,b},{c,d}}`, ``},
	} {
		got := vm.value(tc.r, tc.oid, 0, []byte(tc.in))
		if string(got) != tc.out {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.out)
		}
	}
}

// A client encoding other than UTF-8 gets JSON keys in it, while sluice
// read the statement as UTF-8: to a LATIN1 client 'é' (sent as the bytes
// C3 A9) and U&'\00c3\00a9' are both the key "Ã©", which comes back as
// C3 A9 — the shown key's bytes. A plan with non-ASCII keys is then
// applied whole.
func TestJSONKeysOutsideUTF8(t *testing.T) {
	r := policy.MaskedColumn{Strategy: "redact", Shape: policy.ShapeJSONObject, Parts: []policy.MaskedColumn{
		{Name: "é"}, {Name: "Ã©", Strategy: "email"}}}.Rule()
	latin1 := "{\"\xc3\xa9\" : \"Alice\", \"\xc3\xa9\" : \"alice@example.com\"}"
	s := NewSession(Config{Masker: mask.New([]byte("key"))})
	for _, enc := range []string{"LATIN1", "UTF8"} {
		if err := s.parameterStatus(paramBody(t, "client_encoding", enc)); err != nil {
			t.Fatal(err)
		}
		if s.utf8 != (enc == "UTF8") {
			t.Errorf("client_encoding %s: utf8 %v", enc, s.utf8)
		}
	}
	vm := valueMasker{m: mask.New([]byte("key"))}
	if got := string(vm.value(r, oidJSON, 0, []byte(latin1))); strings.Contains(got, "alice") {
		t.Errorf("LATIN1 client: %s", got)
	}
	vm.utf8 = true
	utf8 := `{"é" : "Alice", "Ã©" : "alice@example.com"}`
	if got, want := string(vm.value(r, oidJSON, 0, []byte(utf8))), `{"é" : "Alice", "Ã©" : "a***@example.com"}`; got != want {
		t.Errorf("UTF8 client: got %s, want %s", got, want)
	}
}

// paramBody is the body of a ParameterStatus message.
func paramBody(t *testing.T, name, value string) []byte {
	b := enc(t, &pgproto3.ParameterStatus{Name: name, Value: value})
	return b[5:] // the body
}

// Binary arrays: one dimension is masked by element (whatever its lower
// bound); more dimensions, whose elements the plan cannot place, are
// masked whole (NULL).
func TestStructuredBinaryArrays(t *testing.T) {
	vm := valueMasker{m: mask.New([]byte("key"))}
	r := policy.MaskedColumn{Strategy: "redact", Shape: policy.ShapeArray, Parts: []policy.MaskedColumn{{}, {Strategy: "email"}}}.Rule()
	array := func(dims [][2]int, elems ...string) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(dims)))
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, oidText)
		for _, d := range dims {
			b = binary.BigEndian.AppendUint32(b, uint32(d[0]))
			b = binary.BigEndian.AppendUint32(b, uint32(int32(d[1])))
		}
		for _, e := range elems {
			b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
			b = append(b, e...)
		}
		return b
	}
	got := vm.value(r, 1009, 1, array([][2]int{{2, 0}}, "Alice", "alice@example.com"))
	if want := array([][2]int{{2, 0}}, "Alice", "a***@example.com"); !bytes.Equal(got, want) {
		t.Errorf("one dimension: got %q, want %q", got, want)
	}
	if got := vm.value(r, 1009, 1, array([][2]int{{1, 1}, {2, 1}}, "Alice", "alice@example.com")); got != nil {
		t.Errorf("two dimensions: got %q, want NULL", got)
	}
	if got := vm.value(r, 1009, 1, array([][2]int{{3, 1}}, "Alice", "alice@example.com", "x")); got != nil {
		t.Errorf("more elements than planned: got %q, want NULL", got)
	}
}
