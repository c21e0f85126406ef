package policy

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// MongoCursor is the kind of a getMore or killCursors: no new access, the
// wire session continues (or ends) a cursor it opened, with that cursor's
// decision; it must refuse a cursor this session did not open.
const MongoCursor = "cursor"

// AnalyzeMongo accounts for one MongoDB command run in database db: the
// command document (its first key names it) and the documents of its
// kind-1 sections by identifier ("documents", "updates", "deletes", "ops",
// "nsInfo"). A MongoDB database is a Schema, a collection a Table and a
// field path a Column. Every command sluice does not model is refused
// (Analysis.Err): new commands are not let through unread.
func AnalyzeMongo(db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document) Analysis {
	docs := []bsoncore.Document{cmd}
	for _, ds := range seqs {
		docs = append(docs, ds...)
	}
	for _, d := range docs {
		if k, dup := duplicateKey(d); dup {
			// sluice reads the first of two same-named fields; a server
			// might act on the other (a bounded filter, then {}).
			return Analysis{Err: fmt.Errorf("field %q appears twice in one document: refused as ambiguous", k)}
		}
	}
	a := &mongoAnalyzer{db: db, cmd: cmd, seqs: seqs}
	if err := a.command(); err != nil {
		return Analysis{Err: err}
	}
	return Analysis{Statements: []Statement{a.st}}
}

type mongoAnalyzer struct {
	collector
	db   string
	cmd  bsoncore.Document
	seqs map[string][]bsoncore.Document
}

func (a *mongoAnalyzer) table(db, coll string) Object {
	return Object{Kind: ObjectTable, Schema: db, Name: coll}
}

// mongoAdmin maps server administration commands to the admin action
// they need; all are in the admin group, refused by default.
var mongoAdmin = map[string]string{
	"createUser": "grant", "updateUser": "grant", "dropUser": "grant", "dropAllUsersFromDatabase": "grant",
	"grantRolesToUser": "grant", "revokeRolesFromUser": "grant", "createRole": "grant", "updateRole": "grant",
	"dropRole": "grant", "dropAllRolesFromDatabase": "grant", "grantPrivilegesToRole": "grant",
	"revokePrivilegesFromRole": "grant", "grantRolesToRole": "grant", "revokeRolesFromRole": "grant",
	"usersInfo": "monitor", "rolesInfo": "monitor",
	"setParameter": "alter_system", "getParameter": "monitor", "shutdown": "alter_system", "fsync": "alter_system",
	"fsyncUnlock": "alter_system", "killOp": "alter_system", "killAllSessions": "alter_system",
	"killSessions": "alter_system", "profile": "alter_system", "logRotate": "alter_system",
	"setFeatureCompatibilityVersion": "alter_system", "compact": "alter_system", "repairDatabase": "alter_system",
	"currentOp": "monitor", "getLog": "monitor", "serverStatus": "monitor", "top": "monitor",
	"hostInfo": "monitor", "getCmdLineOpts": "monitor", "replSetGetStatus": "monitor", "listCommands": "monitor",
	"eval": "execute_dynamic", "mapReduce": "execute_dynamic", "mapreduce": "execute_dynamic",
	"$eval": "execute_dynamic", "geoSearch": "execute_dynamic",
}

// mongoSession are commands that touch no data: the handshake, liveness,
// authentication (sluice performs it), and ending server sessions.
var mongoSession = map[string]bool{
	"hello": true, "isMaster": true, "ismaster": true, "ping": true, "buildInfo": true, "buildinfo": true,
	"endSessions": true, "saslStart": true, "saslContinue": true, "logout": true, "connectionStatus": true,
	"whatsmyuri": true, "getLastError": true, "getlasterror": true, "getnonce": true,
	"startSession": true, "abortTransaction": true, "commitTransaction": true, "refreshSessions": true,
}

func (a *mongoAnalyzer) command() error {
	first, err := a.cmd.IndexErr(0)
	if err != nil {
		return fmt.Errorf("an empty MongoDB command")
	}
	name := first.Key()
	coll, _ := first.Value().StringValueOK()
	tbl := a.table(a.db, coll)
	a.st.Kind, a.st.Lineage = name, true
	target := Object{Kind: ObjectTarget}
	switch {
	case mongoSession[name]:
		a.st.Kind = "session"
		a.add("transaction", target)
		return nil
	case mongoAdmin[name] != "":
		a.add(mongoAdmin[name], target)
		return nil
	}
	needColl := func() error {
		if coll == "" {
			return fmt.Errorf("%s without a collection name", name)
		}
		return nil
	}
	switch name {
	case "getMore", "killCursors":
		a.st.Kind = MongoCursor
		return nil
	case "listDatabases":
		a.add("show", target)
		return nil
	case "listCollections", "dbStats":
		a.add("show", Object{Kind: ObjectSchema, Name: a.db})
		return nil
	case "listIndexes", "collStats", "count", "distinct", "find":
		if err := needColl(); err != nil {
			return err
		}
		a.add("select", tbl)
		for _, k := range []string{"filter", "query"} {
			if err := a.filter(tbl, a.cmd.Lookup(k)); err != nil {
				return err
			}
		}
		if name == "distinct" {
			if key, ok := a.cmd.Lookup("key").StringValueOK(); ok {
				a.use(Column{Schema: tbl.Schema, Table: tbl.Name, Name: key})
			}
		}
		if err := a.keys(tbl, a.cmd.Lookup("sort")); err != nil {
			return err
		}
		return nil
	case "aggregate":
		if coll == "" {
			// {aggregate: 1}: database-level stages ($currentOp,
			// $listLocalSessions, $documents); only $documents reads no
			// server state.
			pipe, _ := a.cmd.Lookup("pipeline").ArrayOK()
			if vals, _ := pipe.Values(); len(vals) > 0 {
				if d, ok := vals[0].DocumentOK(); ok {
					if e, err := d.IndexErr(0); err == nil && e.Key() == "$documents" {
						return a.pipeline(tbl, a.cmd.Lookup("pipeline"))
					}
				}
			}
			a.add("monitor", target)
			return nil
		}
		a.add("select", tbl)
		return a.pipeline(tbl, a.cmd.Lookup("pipeline"))
	case "insert":
		if err := needColl(); err != nil {
			return err
		}
		a.add("insert", tbl)
		return nil
	case "update":
		if err := needColl(); err != nil {
			return err
		}
		a.add("update", tbl)
		return a.statements(tbl, "updates", true)
	case "delete":
		if err := needColl(); err != nil {
			return err
		}
		a.add("delete", tbl)
		return a.statements(tbl, "deletes", false)
	case "findAndModify", "findandmodify":
		if err := needColl(); err != nil {
			return err
		}
		obj := tbl
		a.add("select", obj)
		if rm, _ := a.cmd.Lookup("remove").BooleanOK(); rm {
			a.add("delete", obj)
		} else {
			a.add("update", obj)
			if err := a.update(tbl, a.cmd.Lookup("update")); err != nil {
				return err
			}
		}
		q := a.cmd.Lookup("query")
		a.st.Bounded = bounds(q)
		if err := a.filter(tbl, q); err != nil {
			return err
		}
		return a.keys(tbl, a.cmd.Lookup("sort"))
	case "bulkWrite":
		return a.bulkWrite()
	case "create":
		if err := needColl(); err != nil {
			return err
		}
		a.add("create", tbl)
		if on, ok := a.cmd.Lookup("viewOn").StringValueOK(); ok {
			// A view reads its source with the creator's pipeline.
			a.add("select", a.table(a.db, on))
			return a.pipeline(a.table(a.db, on), a.cmd.Lookup("pipeline"))
		}
		return nil
	case "createIndexes", "collMod", "convertToCapped", "validate":
		if err := needColl(); err != nil {
			return err
		}
		a.add("alter", tbl)
		return nil
	case "drop", "dropIndexes", "deleteIndexes":
		if err := needColl(); err != nil {
			return err
		}
		act := "drop"
		if name != "drop" {
			act = "alter"
		}
		a.add(act, tbl)
		return nil
	case "dropDatabase":
		a.add("drop", Object{Kind: ObjectSchema, Name: a.db})
		return nil
	case "renameCollection":
		from, to := coll, ""
		to, _ = a.cmd.Lookup("to").StringValueOK()
		fdb, fc, ok1 := strings.Cut(from, ".")
		tdb, tc, ok2 := strings.Cut(to, ".")
		if !ok1 || !ok2 {
			return fmt.Errorf("renameCollection needs full names (db.collection)")
		}
		a.add("drop", a.table(fdb, fc))
		a.add("create", a.table(tdb, tc))
		return nil
	}
	return fmt.Errorf("command %q is not in sluice's MongoDB model: refused", name)
}

// bounds reports whether filter v limits the documents it matches by a
// field: {} and a filter of only $comment, $expr, $where, $text or
// $jsonSchema (each may well be true for every document) do not; an $or
// bounds only if each branch does, a $nor never.
func bounds(v bsoncore.Value) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	elems, _ := d.Elements()
	for _, e := range elems {
		k := e.Key()
		if !strings.HasPrefix(k, "$") {
			return true
		}
		if k != "$and" && k != "$or" {
			continue
		}
		arr, _ := e.Value().ArrayOK()
		branches, _ := arr.Values()
		all, any := len(branches) > 0, false
		for _, b := range branches {
			bb := bounds(b)
			all, any = all && bb, any || bb
		}
		if (k == "$and" && any) || (k == "$or" && all) {
			return true
		}
	}
	return false
}

// docs are a command's documents under key: an array in the command or a
// kind-1 sequence.
func (a *mongoAnalyzer) docs(key string) ([]bsoncore.Document, error) {
	out := append([]bsoncore.Document(nil), a.seqs[key]...)
	v := a.cmd.Lookup(key)
	if v.Type == 0 {
		return out, nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("%s is not an array", key)
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, err
	}
	for _, x := range vals {
		d, ok := x.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("%s holds a non-document", key)
		}
		out = append(out, d)
	}
	return out, nil
}

// statements checks each update or delete statement: its filter (q; an
// empty one touches every document: unbounded) and, for updates, the
// update (u).
func (a *mongoAnalyzer) statements(t Object, key string, isUpdate bool) error {
	ds, err := a.docs(key)
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		return fmt.Errorf("%s without %s", a.st.Kind, key)
	}
	a.st.Bounded = true
	for _, d := range ds {
		q := d.Lookup("q")
		a.st.Bounded = a.st.Bounded && bounds(q)
		if err := a.filter(t, q); err != nil {
			return err
		}
		if isUpdate {
			if err := a.update(t, d.Lookup("u")); err != nil {
				return err
			}
		}
	}
	return nil
}

// update checks an update: operators, or a pipeline (its stages may run
// code like any pipeline).
func (a *mongoAnalyzer) update(t Object, u bsoncore.Value) error {
	if _, ok := u.ArrayOK(); ok {
		return a.stages(t, u)
	}
	return a.code(u)
}

// bulkWrite (MongoDB 8.0, on admin): ops index namespaces in nsInfo.
func (a *mongoAnalyzer) bulkWrite() error {
	ns, err := a.docs("nsInfo")
	if err != nil {
		return err
	}
	ops, err := a.docs("ops")
	if err != nil {
		return err
	}
	if len(ops) == 0 {
		return fmt.Errorf("bulkWrite without ops")
	}
	a.st.Bounded = true
	for _, op := range ops {
		e, err := op.IndexErr(0)
		if err != nil {
			return fmt.Errorf("bulkWrite with an empty op")
		}
		i, ok := e.Value().AsInt64OK()
		if !ok || i < 0 || int(i) >= len(ns) {
			return fmt.Errorf("bulkWrite op names no namespace")
		}
		full, _ := ns[i].Lookup("ns").StringValueOK()
		db, coll, ok := strings.Cut(full, ".")
		if !ok || coll == "" {
			return fmt.Errorf("bulkWrite namespace %q", full)
		}
		obj := a.table(db, coll)
		switch e.Key() {
		case "insert":
			a.add("insert", obj)
		case "update", "delete":
			a.add(e.Key(), obj)
			f := op.Lookup("filter")
			a.st.Bounded = a.st.Bounded && bounds(f)
			if err := a.filter(obj, f); err != nil {
				return err
			}
			if e.Key() == "update" {
				if err := a.update(obj, op.Lookup("updateMods")); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("bulkWrite op %q", e.Key())
		}
	}
	return nil
}

// mongoCode are operators that run server-side JavaScript.
var mongoCode = map[string]bool{"$where": true, "$function": true, "$accumulator": true}

// code finds server-side JavaScript anywhere in v.
func (a *mongoAnalyzer) code(v bsoncore.Value) error {
	switch v.Type {
	case bsoncore.TypeJavaScript, bsoncore.TypeCodeWithScope:
		a.add("execute_dynamic", Object{Kind: ObjectTarget})
		return nil
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
	default:
		return nil
	}
	elems, err := bsoncore.Document(v.Data).Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		if mongoCode[e.Key()] {
			a.add("execute_dynamic", Object{Kind: ObjectTarget})
		}
		if err := a.code(e.Value()); err != nil {
			return err
		}
	}
	return nil
}

// filter records the fields a query filter steers by and finds code in it.
func (a *mongoAnalyzer) filter(t Object, v bsoncore.Value) error {
	if v.Type == 0 {
		return nil
	}
	if err := a.code(v); err != nil {
		return err
	}
	d, ok := v.DocumentOK()
	if !ok {
		return fmt.Errorf("a filter that is not a document")
	}
	return a.fields(t, "", d)
}

// fields walks a filter: field paths are uses; $and/$or/$nor and
// $elemMatch recurse.
func (a *mongoAnalyzer) fields(t Object, prefix string, d bsoncore.Document) error {
	elems, err := d.Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		k := e.Key()
		switch {
		case k == "$and" || k == "$or" || k == "$nor":
			arr, _ := e.Value().ArrayOK()
			vals, _ := arr.Values()
			for _, x := range vals {
				if sub, ok := x.DocumentOK(); ok {
					if err := a.fields(t, prefix, sub); err != nil {
						return err
					}
				}
			}
		case k == "$elemMatch":
			if sub, ok := e.Value().DocumentOK(); ok {
				if err := a.fields(t, prefix, sub); err != nil {
					return err
				}
			}
		case strings.HasPrefix(k, "$"):
			if k == "$expr" || mongoCode[k] || k == "$text" {
				// Expressions name fields as "$path" strings.
				a.exprFields(t, e.Value())
			}
		default:
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			a.use(Column{Schema: t.Schema, Table: t.Name, Name: path})
			if sub, ok := e.Value().DocumentOK(); ok {
				if err := a.fields(t, path, sub); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// exprFields records "$path" field references of an aggregation expression.
func (a *mongoAnalyzer) exprFields(t Object, v bsoncore.Value) {
	switch v.Type {
	case bsoncore.TypeString:
		s := v.StringValue()
		if strings.HasPrefix(s, "$") && !strings.HasPrefix(s, "$$") && len(s) > 1 {
			a.use(Column{Schema: t.Schema, Table: t.Name, Name: s[1:]})
		}
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		vals, _ := bsoncore.Document(v.Data).Values()
		for _, x := range vals {
			a.exprFields(t, x)
		}
	}
}

// keys records sort (or group) keys.
func (a *mongoAnalyzer) keys(t Object, v bsoncore.Value) error {
	if v.Type == 0 {
		return nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return fmt.Errorf("sort is not a document")
	}
	elems, err := d.Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		a.use(Column{Schema: t.Schema, Table: t.Name, Name: e.Key()})
	}
	return nil
}

// mongoStages are the pipeline stages sluice reads; any other is refused.
var mongoStages = map[string]bool{
	"$match": true, "$project": true, "$addFields": true, "$set": true, "$unset": true, "$group": true,
	"$sort": true, "$limit": true, "$skip": true, "$unwind": true, "$lookup": true, "$graphLookup": true,
	"$unionWith": true, "$facet": true, "$count": true, "$sortByCount": true, "$bucket": true,
	"$bucketAuto": true, "$replaceRoot": true, "$replaceWith": true, "$sample": true, "$redact": true,
	"$densify": true, "$fill": true, "$setWindowFields": true, "$geoNear": true, "$documents": true,
	"$out": true, "$merge": true, "$collStats": true, "$indexStats": true,
}

func (a *mongoAnalyzer) pipeline(t Object, v bsoncore.Value) error {
	if _, ok := v.ArrayOK(); !ok {
		return fmt.Errorf("aggregate without a pipeline array")
	}
	return a.stages(t, v)
}

// stages accounts for each stage: collections other stages read, targets
// of $out and $merge, code, and the fields filters and sorts steer by.
func (a *mongoAnalyzer) stages(t Object, v bsoncore.Value) error {
	arr, _ := v.ArrayOK()
	vals, err := arr.Values()
	if err != nil {
		return err
	}
	for _, x := range vals {
		st, ok := x.DocumentOK()
		if !ok {
			return fmt.Errorf("a pipeline stage that is not a document")
		}
		elems, err := st.Elements()
		if err != nil || len(elems) != 1 {
			return fmt.Errorf("a pipeline stage must have exactly one field")
		}
		name, body := elems[0].Key(), elems[0].Value()
		if !mongoStages[name] {
			return fmt.Errorf("pipeline stage %q is not in sluice's MongoDB model: refused", name)
		}
		if err := a.code(body); err != nil {
			return err
		}
		switch name {
		case "$match":
			if err := a.filter(t, body); err != nil {
				return err
			}
		case "$sort":
			if err := a.keys(t, body); err != nil {
				return err
			}
		case "$group", "$bucket", "$bucketAuto", "$sortByCount", "$setWindowFields":
			if d, ok := body.DocumentOK(); ok {
				for _, k := range []string{"_id", "groupBy", "partitionBy", "sortBy"} {
					a.exprFields(t, d.Lookup(k))
				}
			} else {
				a.exprFields(t, body)
			}
		case "$lookup", "$graphLookup":
			d, _ := body.DocumentOK()
			from, _ := d.Lookup("from").StringValueOK()
			if from == "" {
				if _, ok := d.Lookup("pipeline").ArrayOK(); !ok {
					return fmt.Errorf("%s without from", name)
				}
			} else {
				a.add("select", a.table(t.Schema, from))
			}
			for _, k := range []string{"localField", "startWith", "connectFromField", "connectToField", "foreignField"} {
				if s, ok := d.Lookup(k).StringValueOK(); ok {
					a.use(Column{Schema: t.Schema, Table: t.Name, Name: strings.TrimPrefix(s, "$")})
				}
			}
			if p := d.Lookup("pipeline"); p.Type != 0 {
				if err := a.stages(a.table(t.Schema, from), p); err != nil {
					return err
				}
			}
		case "$unionWith":
			from, ok := body.StringValueOK()
			var p bsoncore.Value
			if !ok {
				d, _ := body.DocumentOK()
				from, _ = d.Lookup("coll").StringValueOK()
				p = d.Lookup("pipeline")
			}
			if from != "" {
				a.add("select", a.table(t.Schema, from))
			}
			if p.Type != 0 {
				if err := a.stages(a.table(t.Schema, from), p); err != nil {
					return err
				}
			}
		case "$facet":
			d, ok := body.DocumentOK()
			if !ok {
				return fmt.Errorf("$facet is not a document")
			}
			facets, _ := d.Values()
			for _, f := range facets {
				if err := a.stages(t, f); err != nil {
					return err
				}
			}
		case "$out":
			db, target := a.namespace(t.Schema, body)
			if target == "" {
				return fmt.Errorf("$out without a collection")
			}
			// $out replaces the collection: its documents go, new ones come.
			a.add("insert", a.table(db, target))
			a.add("delete", a.table(db, target))
		case "$merge":
			into := body
			if d, ok := body.DocumentOK(); ok {
				into = d.Lookup("into")
			}
			db, target := a.namespace(t.Schema, into)
			if target == "" {
				return fmt.Errorf("$merge without a collection")
			}
			if d, ok := body.DocumentOK(); ok {
				if p := d.Lookup("whenMatched"); p.Type == bsoncore.TypeArray {
					if err := a.stages(a.table(db, target), p); err != nil {
						return err
					}
				}
			}
			a.add("insert", a.table(db, target))
			a.add("update", a.table(db, target))
		}
	}
	return nil
}

// duplicateKey finds a field name used twice in one document, at any depth.
func duplicateKey(d bsoncore.Document) (string, bool) {
	return duplicateIn(bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: d})
}

func duplicateIn(v bsoncore.Value) (string, bool) {
	if v.Type != bsoncore.TypeEmbeddedDocument && v.Type != bsoncore.TypeArray {
		return "", false
	}
	elems, err := bsoncore.Document(v.Data).Elements()
	if err != nil {
		return "", false // Validate has refused it already
	}
	seen := make(map[string]bool, len(elems))
	for _, e := range elems {
		// An array's keys are indexes the server ignores: only its
		// elements are looked into.
		if k := e.Key(); v.Type == bsoncore.TypeEmbeddedDocument {
			if seen[k] {
				return k, true
			}
			seen[k] = true
		}
		if k, dup := duplicateIn(e.Value()); dup {
			return k, true
		}
	}
	return "", false
}

// namespace reads a $out or $merge target: "coll", or {db, coll} (db
// defaults to in, the pipeline's database).
func (a *mongoAnalyzer) namespace(in string, v bsoncore.Value) (db, coll string) {
	if s, ok := v.StringValueOK(); ok {
		return in, s
	}
	d, ok := v.DocumentOK()
	if !ok {
		return in, ""
	}
	db = in
	if s, ok := d.Lookup("db").StringValueOK(); ok {
		db = s
	}
	coll, _ = d.Lookup("coll").StringValueOK()
	return db, coll
}

// MongoCommand builds a command document from extended JSON (canonical or
// relaxed), for tests and the policy corpus.
func MongoCommand(extJSON string) (bsoncore.Document, error) {
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(extJSON), false, &d); err != nil {
		return nil, fmt.Errorf("cannot read command JSON: %w", err)
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, err
	}
	return bsoncore.Document(b), nil
}

// AuthorizeMongo decides one MongoDB command run in database db; text is
// the command as the audit trail and policies (context.statement.text) see
// it. The decision is not cached: a command's values decide its filters.
func (a *Authorizer) AuthorizeMongo(db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document, text string) Decision {
	an := AnalyzeMongo(db, cmd, seqs)
	if an.Err != nil {
		return a.shadowed(Decision{Outcome: Deny, Unparseable: true, Reason: an.Err.Error()})
	}
	return a.shadowed(a.decide(an.Statements, text))
}
