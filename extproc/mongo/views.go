package mongo

import (
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// A view reads another collection through a pipeline: its documents carry
// the source's tagged fields under the names the pipeline gives them. So
// before a command that reads a collection sluice has not placed, it asks
// the server (listCollections, on the session's own connection and login)
// whether it is a view, and decides the command with the answer.

// viewTTL is how long the server's answer stands; DDL through this session
// forgets every answer at once.
const viewTTL = 5 * time.Second

// maxLookupRounds bounds the lookups for one command (a view of a view
// is learnt one level per round).
const maxLookupRounds = 8

// collInfo is what the server said about a collection.
type collInfo struct {
	view policy.MongoView
	at   time.Time
}

// lookup is a listCollections sluice sent for names in db.
type lookup struct {
	db    string
	names []string
}

// MongoView implements policy.MongoViews from the server's answers.
func (s *Session) MongoView(db, coll string) (policy.MongoView, bool) {
	c, ok := s.colls[db+"."+coll]
	if !ok || time.Since(c.at) > viewTTL {
		return policy.MongoView{}, false
	}
	return c.view, true
}

// lookUp asks the server about the collections named (db.coll), one
// listCollections per database.
func (s *Session) lookUp(full []string, out *session.Output) {
	byDB := map[string][]string{}
	var order []string
	for _, f := range full {
		db, coll, _ := strings.Cut(f, ".")
		if _, ok := byDB[db]; !ok {
			order = append(order, db)
		}
		byDB[db] = append(byDB[db], coll)
	}
	for _, db := range order {
		names := bsoncore.NewArrayBuilder()
		for _, n := range byDB[db] {
			names.AppendString(n)
		}
		cmd := bsoncore.NewDocumentBuilder().AppendInt32("listCollections", 1).
			AppendDocument("filter", bsoncore.NewDocumentBuilder().
				AppendDocument("name", bsoncore.NewDocumentBuilder().AppendArray("$in", names.Build()).Build()).Build()).
			AppendDocument("cursor", bsoncore.NewDocumentBuilder().AppendInt32("batchSize", 1000).Build()).
			AppendString("$db", db).Build()
		r := s.sendOwn(cmd, out)
		r.lookup = &lookup{db: db, names: byDB[db]}
		s.lookups++
	}
}

// learn records the server's answer: each view's definition; a name the
// server did not list is a plain collection (or none yet). An answer sluice
// cannot read leaves the names unknown, so the command is refused.
func (s *Session) learn(l *lookup, body bsoncore.Document) {
	if ok, _ := body.Lookup("ok").AsFloat64OK(); ok != 1 {
		s.log.Warn("listCollections refused: views cannot be placed", "db", l.db, "reply", body.String())
		return
	}
	cur, _ := body.Lookup("cursor").DocumentOK()
	if id, _ := cur.Lookup("id").AsInt64OK(); id != 0 {
		return // more than one batch for a handful of names: not trusted
	}
	now := time.Now()
	seen := map[string]bool{}
	asked := map[string]bool{}
	for _, n := range l.names {
		asked[n] = true
	}
	batch, _ := cur.Lookup("firstBatch").ArrayOK()
	vals, _ := batch.Values()
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			continue
		}
		name, _ := d.Lookup("name").StringValueOK()
		typ, _ := d.Lookup("type").StringValueOK()
		if !asked[name] {
			continue
		}
		info := collInfo{at: now}
		if typ == "view" {
			opts, _ := d.Lookup("options").DocumentOK()
			on, _ := opts.Lookup("viewOn").StringValueOK()
			if on == "" {
				continue // a view sluice cannot read: stays unknown
			}
			info.view = policy.MongoView{ViewOn: on, Pipeline: opts.Lookup("pipeline")}
		}
		seen[name] = true
		s.colls[l.db+"."+name] = info
	}
	for _, n := range l.names {
		if !seen[n] {
			s.colls[l.db+"."+n] = collInfo{at: now}
		}
	}
}

// ddlCommands change what collections are: the session forgets the
// server's answers once one runs.
var ddlCommands = map[string]bool{"create": true, "drop": true, "dropDatabase": true, "renameCollection": true, "collMod": true}
