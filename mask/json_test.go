package mask

import (
	"encoding/json"
	"testing"
)

func TestJSONMasksOnlyPlannedKeys(t *testing.T) {
	m := New([]byte("k"))
	obj := NewRule("j", "redact", "null").WithParts(JSONObject, []*Rule{
		NewRule("id", "", ""), NewRule("email", "email", ""), NewRule("ssn", "partial:4", ""), NewRule("n", "redact", "zero"),
	})
	for _, tc := range []struct {
		name   string
		r      *Rule
		in     string
		want   string
		detect bool
	}{
		{"object", obj, `{"id": 7, "email": "jane@x.org", "ssn": "123-45-6789", "n": 42}`, `{"id": 7, "email": "j***@x.org", "ssn": "*******6789", "n": 0}`, false},
		{"unknown key masked whole", obj, `{"id":7,"other":"secret"}`, `{"id":7,"other":"[redacted]"}`, false},
		{"escaped key", obj, `{"em\u0061il":"a\"b@c.de"}`, `{"em\u0061il":"a***@c.de"}`, false},
		{"nested value under a masked key", obj, `{"email":{"x":1}}`, `{"email":"[redacted]"}`, false},
		{"array of objects", NewRule("a", "redact", "").WithParts(JSONArray, []*Rule{obj}), `[{"id":1,"email":"a@b.cd"},null,{"id":2}]`, `[{"id":1,"email":"a***@b.cd"},null,{"id":2}]`, false},
		{"positional array past its parts", NewRule("a", "redact", "").WithParts(JSONArray, []*Rule{NewRule("", "", ""), NewRule("", "email", "")}), `[1,"a@b.cd",3]`, `[1,"a***@b.cd",null]`, false},
		{"map", NewRule("m", "redact", "").WithParts(JSONMap, []*Rule{NewRule("", "partial:2", "")}), `{"a":"1234","b":null}`, `{"a":"**34","b":null}`, false},
		{"malformed", obj, `{"id":`, `"[redacted]"`, false},
		{"detectors in strings keep JSON valid", nil, `{"note":"password=hunter22\"}","k":"x@y.com"}`, `{"note":"[secret]","k":"[email]"}`, true},
		{"leaf document", NewRule("j", "redact", "").WithParts(JSONLeaf, []*Rule{NewRule("", "email", "")}), `"jane@x.org"`, `"j***@x.org"`, false},
	} {
		out, _, _ := m.JSON(nil, tc.r, []byte(tc.in), tc.detect)
		if string(out) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, out, tc.want)
		}
		if !json.Valid(out) {
			t.Errorf("%s: invalid JSON %s", tc.name, out)
		}
	}
}

func TestTypedText(t *testing.T) {
	m := New([]byte("k"))
	for _, tc := range []struct {
		typed Typed
		kind  Kind
		in    string
		want  string
		null  bool
	}{
		{TypedBucket, KindDate, "1987-06-05", "1987-01-01", false},
		{TypedZero, KindDate, "1987-06-05", "1970-01-01", false},
		{TypedBucket, KindTimestamp, "2024-05-06 07:08:09.5+02", "2024-01-01 00:00:00+02", false},
		{TypedBucket, KindDecimal, "12345.67", "10000", false},
		{TypedBucket, KindDecimal, "-0.0345", "-0.03", false},
		{TypedZero, KindDecimal, "99.5", "0", false},
		{TypedBucket, KindInt, "-87", "-80", false},
		{TypedZero, KindUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000", false},
		{TypedNull, KindDate, "1987-06-05", "", true},
		{TypedBucket, KindDate, "infinity", "", true},
		{TypedBucket, KindDate, "05/06/1987", "", true},
	} {
		out, ok := m.TypedText(tc.typed, tc.kind, []byte(tc.in))
		if ok == tc.null || (ok && string(out) != tc.want) {
			t.Errorf("%s %v %q: got %q %v, want %q", tc.typed, tc.kind, tc.in, out, ok, tc.want)
		}
	}
	u1, _ := m.TypedText(TypedToken, KindUUID, []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))
	u2, _ := m.TypedText(TypedToken, KindUUID, []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))
	if string(u1) != string(u2) || len(u1) != 36 || string(u1[14]) != "8" {
		t.Errorf("token UUIDs %s %s: want equal version 8 UUIDs", u1, u2)
	}
}
