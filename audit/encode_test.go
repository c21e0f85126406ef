package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var awkward = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnew\nline\rcr\b\f",
	"\x00\x01\x1f\x7f", "héllo wörld ✓", "emoji 🐘", "line sep \u2028 para \u2029", "bad utf8 \xff\xfe\xc3",
	"$1, $2", "c***@example.com", "日本語",
}

func randomString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return awkward[r.IntN(len(awkward))]
	}
	b := make([]byte, r.IntN(24))
	for i := range b {
		b[i] = byte(r.IntN(256))
		if r.IntN(4) > 0 {
			b[i] = byte(0x20 + r.IntN(0x5f))
		}
	}
	return string(b)
}

func randomStrings(r *rand.Rand) []string {
	if r.IntN(3) == 0 {
		return nil
	}
	out := make([]string, r.IntN(4))
	for i := range out {
		out[i] = randomString(r)
	}
	return out
}

var floats = []float64{0, 0.001, 0.412, 1, 12.5, 1234567.891, 1e-7, 3.3e-9, 1e21, 2.5e22, 123456789012345678, 5e-324}

func randomEvent(r *rand.Rand) Event {
	e := Event{
		V: r.IntN(3), Session: randomString(r), Seq: r.Int64N(1 << 40), Kind: randomString(r), Agent: randomString(r),
		Time:      time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC(),
		ActingFor: randomString(r), Target: randomString(r), Statement: randomString(r), Fingerprint: randomString(r),
		Decision: randomString(r), Reason: randomString(r), Policies: randomStrings(r), Masked: randomStrings(r),
		Rows: r.Int64N(1000) - 10, LatencyMS: floats[r.IntN(len(floats))], Error: randomString(r), By: randomString(r),
		Groups: randomStrings(r), BytesIn: r.Int64N(1 << 30), BytesOut: r.Int64N(3), Prev: randomString(r), Hash: randomString(r),
	}
	if r.IntN(2) == 0 {
		e.Time = e.Time.In(time.FixedZone("x", 3600*(r.IntN(20)-10)))
	}
	if r.IntN(2) == 0 {
		e.Result = &Result{Columns: randomStrings(r), Truncated: r.IntN(2) == 0}
		for range r.IntN(4) {
			var row []*string
			if r.IntN(5) > 0 {
				row = []*string{}
				for range r.IntN(4) {
					if r.IntN(4) == 0 {
						row = append(row, nil)
					} else {
						v := randomString(r)
						row = append(row, &v)
					}
				}
			}
			e.Result.Rows = append(e.Result.Rows, row)
		}
	}
	if r.IntN(2) == 0 {
		e.Client = map[string]string{}
		for range r.IntN(4) {
			e.Client[randomString(r)] = randomString(r)
		}
	}
	if r.IntN(2) == 0 {
		e.MaskedCount = map[string]int{}
		for range r.IntN(4) {
			e.MaskedCount[randomString(r)] = r.IntN(100) - 3
		}
	}
	return e
}

// The hand-written encoder must write exactly what encoding/json writes, so
// that the documented format (and every hash) does not depend on which one
// encoded an event.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		e := randomEvent(r)
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
	for _, f := range floats {
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f); !bytes.Equal(got, want) || math.IsNaN(f) {
			t.Errorf("float %v: got %s, want %s", f, got, want)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, s := range awkward {
		f.Add(s, 0.412)
	}
	f.Fuzz(func(t *testing.T, s string, latency float64) {
		if math.IsNaN(latency) || math.IsInf(latency, 0) {
			t.Skip()
		}
		e := Event{Session: s, Statement: s, LatencyMS: latency, Policies: []string{s}, Client: map[string]string{s: s},
			Result: &Result{Columns: []string{s}, Rows: [][]*string{{&s, nil}}}}
		want, _ := json.Marshal(e)
		if got := e.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}
