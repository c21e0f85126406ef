package mongo

import (
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// plan is what sluice does to the replies of one command (and of every
// getMore on the cursor it opens): the masks by field path in the reply
// body, and the guardrails' count of documents returned.
type plan struct {
	rules map[string]*mask.Rule // by path in the reply ("cursor.firstBatch.email")
	walk  map[string]bool       // paths that hold a masked path: walked into
	// protected: the command reads values the agent sees only masked; the
	// server's error messages about it could quote them.
	protected   bool
	rows, bytes int64
	text        string // the command, for the records of its getMores
	dec         policy.Decision
}

// batches are where a cursor's documents sit in a reply.
var batches = []string{"cursor.firstBatch", "cursor.nextBatch"}

// newPlan builds the plan of an allowed command from its decision.
func (s *Session) newPlan(name string, d policy.Decision) *plan {
	p := &plan{protected: d.Protected}
	bases := []string{""}
	if cursorCommands[name] {
		bases = batches
	}
	for _, ms := range d.Masked {
		for _, m := range ms {
			for _, b := range bases {
				path := policy.JoinPath(b, m.Name)
				if p.rules == nil {
					p.rules, p.walk = map[string]*mask.Rule{}, map[string]bool{}
				}
				r := mask.NewRule(m.Name, m.Strategy, m.Typed)
				if old, ok := p.rules[path]; ok && (old.Strategy != r.Strategy || old.N != r.N) {
					r = mask.NewRule(m.Name, "redact", "null") // two plans for one field: the strictest
				}
				p.rules[path] = r
				for i := range path {
					if path[i] == '.' {
						p.walk[path[:i]] = true
					}
				}
			}
		}
	}
	return p
}

// reply applies the request's plan to a reply body: masks, the guardrails'
// limits, the record. It returns the body to send (nil: unchanged) and
// whether the cursor was cut.
func (s *Session) reply(req *request, body bsoncore.Document, cursorID int64, out *session.Output) (bsoncore.Document, bool, error) {
	p := req.plan
	if p == nil {
		return nil, false, nil
	}
	ok, _ := body.Lookup("ok").AsFloat64OK()
	var docs []bsoncore.Value
	for _, b := range batches {
		if arr, isArr := body.LookupErr(strings.Split(b, ".")...); isArr == nil {
			if a, isA := arr.ArrayOK(); isA {
				docs, _ = a.Values()
			}
		}
	}
	if ok == 1 && (len(docs) > 0) {
		p.rows += int64(len(docs))
		for _, d := range docs {
			p.bytes += int64(len(d.Data))
		}
		if msg := s.cfg.Target.Guardrails.CutResult(p.rows, p.bytes); msg != "" {
			// The rest of the result is not the agent's: the server's
			// cursor ends with sluice's own killCursors.
			if cursorID != 0 {
				db, coll, _ := strings.Cut(req.ns, ".")
				s.sendOwn(bsoncore.NewDocumentBuilder().AppendString("killCursors", coll).
					AppendArray("cursors", bsoncore.NewArrayBuilder().AppendInt64(cursorID).Build()).
					AppendString("$db", db).Build(), out)
			}
			s.log.Warn("result cut by guardrails", "documents", p.rows-int64(len(docs)), "max_rows", s.cfg.Target.Guardrails.MaxRows, "max_bytes", s.cfg.Target.Guardrails.MaxBytes)
			errBody := ErrorDoc(OperationFailed, "OperationFailed", cutWords.Replace(msg))
			s.finish(req, errBody, nil)
			return errBody, true, nil
		}
	}
	var masked bsoncore.Document
	code, _ := body.Lookup("code").AsInt64OK()
	if ok != 1 && p.protected && !valueFree[code] {
		// "E11000 duplicate key … { ssn: "…" }": the server's text may
		// quote what the agent sees only masked.
		name, _ := body.Lookup("codeName").StringValueOK()
		masked = ErrorDoc(int32(code), name, "sluice: the server's error message is withheld: the command reads masked fields, and the message could quote them (code "+strconv.FormatInt(code, 10)+")")
	} else if ok == 1 && p.protected && body.Lookup("writeErrors").Type == bsoncore.TypeArray {
		masked = withheldWriteErrors(body)
	} else if len(p.rules) > 0 {
		n := 0
		b, err := p.doc(nil, body, "", s.cfg.Masker, &n)
		if err != nil {
			return nil, false, protoErr("a reply sluice cannot read to mask: %v", err)
		}
		if n > 0 {
			masked = b
			s.stats["masked"] += n
		}
	}
	sent := masked
	if sent == nil {
		sent = body
	}
	s.finish(req, sent, docsOf(sent))
	return masked, false, nil
}

// valueFree are error codes whose messages name no value: Unauthorized,
// NamespaceNotFound, CursorNotFound, MaxTimeMSExpired, NotImplemented (a
// stage or operator the server lacks).
var valueFree = map[int64]bool{13: true, 26: true, 43: true, 50: true, 238: true}

// cutWords put the guardrails' SQL words in MongoDB's.
var cutWords = strings.NewReplacer(" rows:", " documents:", "add a LIMIT or narrow the WHERE clause", "add a limit or narrow the filter", "select fewer columns or rows", "project fewer fields or documents")

// docsOf are the documents of a cursor batch in a reply body.
func docsOf(body bsoncore.Document) []bsoncore.Value {
	for _, b := range batches {
		if v, err := body.LookupErr(strings.Split(b, ".")...); err == nil {
			if a, ok := v.ArrayOK(); ok {
				vals, _ := a.Values()
				return vals
			}
		}
	}
	return nil
}

// Bounds of a recorded result.
const (
	recordDocs  = 100
	recordBytes = 64 << 10
)

// finish completes the command's record with the reply the client gets.
func (s *Session) finish(req *request, body bsoncore.Document, docs []bsoncore.Value) {
	r := req.rec
	if r == nil {
		return
	}
	r.End = time.Now()
	if ok, _ := body.Lookup("ok").AsFloat64OK(); ok != 1 {
		msg, _ := body.Lookup("errmsg").StringValueOK()
		code, _ := body.Lookup("code").AsInt64OK()
		r.Error, r.Code = msg, strconv.FormatInt(code, 10)
	}
	switch {
	case docs != nil:
		r.Rows = int64(len(docs))
	default:
		n, _ := body.Lookup("n").AsInt64OK()
		r.Rows = n
	}
	if s.records && docs != nil {
		res := &session.Result{Columns: []string{"document"}}
		size := 0
		for _, d := range docs {
			txt := d.String()
			if js, err := bson.MarshalExtJSON(bson.Raw(d.Data), false, false); err == nil {
				txt = string(js) // relaxed: numbers as numbers
			}
			if len(res.Rows) >= recordDocs || size+len(txt) > recordBytes {
				res.Truncated = true
				break
			}
			size += len(txt)
			res.Rows = append(res.Rows, []*string{&txt})
		}
		r.Result = res
	}
	s.cfg.Observer.Statement(*r)
}

// doc appends d with its masked fields masked; n counts masked values.
func (p *plan) doc(dst []byte, d bsoncore.Document, prefix string, m *mask.Masker, n *int) ([]byte, error) {
	elems, err := d.Elements()
	if err != nil {
		return nil, err
	}
	idx, dst := bsoncore.AppendDocumentStart(dst)
	for _, e := range elems {
		key, v := e.Key(), e.Value()
		path := policy.JoinPath(prefix, key)
		if r := p.rules[path]; r != nil {
			dst = maskValue(dst, key, v, r, m, n)
			continue
		}
		if p.walk[path] {
			if dst, err = p.nested(dst, key, v, path, m, n); err != nil {
				return nil, err
			}
			continue
		}
		dst = append(dst, e...)
	}
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// nested appends a value that holds masked paths: a document is walked;
// an array's elements stand at the array's own path (MongoDB's "a.b" is b
// in each element of a).
func (p *plan) nested(dst []byte, key string, v bsoncore.Value, path string, m *mask.Masker, n *int) ([]byte, error) {
	var err error
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument:
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeEmbeddedDocument, key)
		return p.doc(dst, v.Document(), path, m, n)
	case bsoncore.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			return nil, err
		}
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeArray, key)
		idx, dst := bsoncore.AppendArrayStart(dst)
		for i, x := range vals {
			if dst, err = p.nested(dst, strconv.Itoa(i), x, path, m, n); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(dst, idx)
	}
	return bsoncore.AppendValueElement(dst, key, v), err
}

// maskValue appends v masked by r: a string by its strategy, an array
// element by element, anything else (numbers, dates, documents) as null.
func maskValue(dst []byte, key string, v bsoncore.Value, r *mask.Rule, m *mask.Masker, n *int) []byte {
	switch v.Type {
	case bsoncore.TypeNull, bsoncore.TypeUndefined:
		return bsoncore.AppendValueElement(dst, key, v)
	case bsoncore.TypeString:
		*n++
		if out, ok := m.Text(r.Strategy, r.N, []byte(v.StringValue())); ok {
			return bsoncore.AppendStringElement(dst, key, string(out))
		}
	case bsoncore.TypeArray:
		vals, _ := v.Array().Values()
		idx, d := bsoncore.AppendArrayElementStart(dst, key)
		for i, x := range vals {
			d = maskValue(d, strconv.Itoa(i), x, r, m, n)
		}
		d, _ = bsoncore.AppendArrayEnd(d, idx)
		return d
	default:
		*n++
	}
	return bsoncore.AppendNullElement(dst, key)
}

// timeLimit sets maxTimeMS on reads from the guardrails' statement
// timeout (a client's own lower limit stays).
func (s *Session) timeLimit(name string, body bsoncore.Document) (bsoncore.Document, bool) {
	limit := s.cfg.Target.Guardrails.StatementTimeout.Milliseconds()
	if limit <= 0 || !timedCommands[name] {
		return nil, false
	}
	if have, ok := body.Lookup("maxTimeMS").AsInt64OK(); ok && have > 0 && have <= limit {
		return nil, false
	}
	out, _ := removeKeys(body, "maxTimeMS")
	idx := len(out) - 1
	b := append([]byte(nil), out[:idx]...)
	b = bsoncore.AppendInt64Element(b, "maxTimeMS", limit)
	b = append(b, 0)
	return bsoncore.UpdateLength(b, 0, int32(len(b))), true
}

// timedCommands accept maxTimeMS. Not distinct: FerretDB 1.24 refuses the
// field there (MongoDB takes it), so a distinct runs without the limit.
// explain takes it at the top level: with executionStats it runs the
// command it wraps.
var timedCommands = map[string]bool{"find": true, "aggregate": true, "count": true, "findAndModify": true, "findandmodify": true, "explain": true}

// removeKeys returns d without the named top-level fields.
func removeKeys(d bsoncore.Document, keys ...string) (bsoncore.Document, bool) {
	elems, err := d.Elements()
	if err != nil {
		return d, false
	}
	drop := false
	for _, e := range elems {
		for _, k := range keys {
			drop = drop || e.Key() == k
		}
	}
	if !drop {
		return d, false
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		keep := true
		for _, k := range keys {
			keep = keep && e.Key() != k
		}
		if keep {
			out = append(out, e...)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out, true
}

// withheldWriteErrors is a write's reply with each write error's message
// withheld (a duplicate key error quotes the key's value), codes kept.
func withheldWriteErrors(body bsoncore.Document) bsoncore.Document {
	elems, _ := body.Elements()
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		if e.Key() != "writeErrors" {
			out = append(out, e...)
			continue
		}
		errs, _ := e.Value().Array().Values()
		aidx, o := bsoncore.AppendArrayElementStart(out, "writeErrors")
		for i, we := range errs {
			d, _ := we.DocumentOK()
			code, _ := d.Lookup("code").AsInt64OK()
			n, _ := d.Lookup("index").AsInt64OK()
			o = bsoncore.AppendDocumentElement(o, strconv.Itoa(i), bsoncore.NewDocumentBuilder().
				AppendInt32("index", int32(n)).AppendInt32("code", int32(code)).
				AppendString("errmsg", "sluice: the server's error message is withheld: the command reads masked fields, and the message could quote them (code "+strconv.FormatInt(code, 10)+")").Build())
		}
		out, _ = bsoncore.AppendArrayEnd(o, aidx)
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}
