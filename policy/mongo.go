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
	an, _ := analyzeMongo(nil, db, cmd, seqs)
	return an
}

func analyzeMongo(views MongoViews, db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document) (Analysis, []string) {
	docs := []bsoncore.Document{cmd}
	for _, ds := range seqs {
		docs = append(docs, ds...)
	}
	for _, d := range docs {
		if k, dup := duplicateKey(d); dup {
			// sluice reads the first of two same-named fields; a server
			// might act on the other (a bounded filter, then {}).
			return Analysis{Err: fmt.Errorf("field %q appears twice in one document: refused as ambiguous", k)}, nil
		}
	}
	name := ""
	if e, err := cmd.IndexErr(0); err == nil {
		name = e.Key()
	}
	for id := range seqs {
		if !mongoSequences[name][id] {
			// The server reads a kind-1 section as the body's field of
			// that name ({aggregate} + "pipeline", {findAndModify} +
			// "update"): one sluice does not expect is not read unchecked.
			return Analysis{Err: fmt.Errorf("%s with a document sequence %q: refused (sluice reads only the sequences the command defines)", name, id)}, nil
		}
	}
	a := &mongoAnalyzer{db: db, cmd: cmd, seqs: seqs, views: views}
	err := a.command()
	if err == nil {
		err = a.internal
	}
	if err != nil {
		return Analysis{Err: err}, a.unresolved
	}
	return Analysis{Statements: []Statement{a.st}}, a.unresolved
}

type mongoAnalyzer struct {
	collector
	db    string
	cmd   bsoncore.Document
	seqs  map[string][]bsoncore.Document
	views MongoViews // nil: every collection is read as stored
	// unresolved are collections read whose kind (view or not) views
	// does not know yet.
	unresolved []string
	internal   error // a namespace of the server's own (local, config, system.*)
}

func (a *mongoAnalyzer) table(db, coll string) Object {
	if (db == "local" || db == "config" || strings.HasPrefix(coll, "system.")) && a.internal == nil {
		// The oplog, sessions, users' SCRAM keys, the profiler's captured
		// commands: the server's own data, never an agent's.
		a.internal = fmt.Errorf("%s.%s is the server's internal data: refused through the gateway", db, coll)
	}
	return Object{Kind: ObjectTable, Schema: db, Name: coll}
}

// mongoSequences are the kind-1 sections each command may carry.
var mongoSequences = map[string]map[string]bool{
	"insert": {"documents": true}, "update": {"updates": true}, "delete": {"deletes": true},
	"bulkWrite": {"ops": true, "nsInfo": true},
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

// mongoExplainable are the commands explain may wrap.
var mongoExplainable = map[string]bool{
	"find": true, "aggregate": true, "count": true, "distinct": true,
	"findAndModify": true, "findandmodify": true, "update": true, "delete": true,
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
	case "explain":
		inner, ok := first.Value().DocumentOK()
		if !ok {
			return fmt.Errorf("explain needs the command to explain, as a document")
		}
		in, err := inner.IndexErr(0)
		if err != nil || !mongoExplainable[in.Key()] {
			k := ""
			if err == nil {
				k = in.Key()
			}
			return fmt.Errorf("explain of %q: refused (sluice explains find, aggregate, count, distinct, findAndModify, update and delete)", k)
		}
		if idb, ok := inner.Lookup("$db").StringValueOK(); ok && idb != a.db {
			// MongoDB refuses the mismatch; a server that read the inner
			// one would plan on a database sluice did not decide.
			return fmt.Errorf("explain of a command in database %q from database %q: refused", idb, a.db)
		}
		// The server plans the command (with executionStats it runs it)
		// and answers with the plan, not documents; it needs what the
		// command needs, and the command's filters and sorts are uses as
		// they would be run. Its outputs stay in the decision, so the
		// server's error text is withheld as for the command.
		a.cmd = inner
		err = a.command()
		a.st.Kind = "explain"
		return err
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
		doc, err := a.source(tbl)
		if err != nil {
			return err
		}
		for _, k := range []string{"filter", "query"} {
			if err := a.filter(doc, a.cmd.Lookup(k)); err != nil {
				return err
			}
		}
		if err := a.keys(doc, a.cmd.Lookup("sort")); err != nil {
			return err
		}
		for _, k := range []string{"min", "max"} {
			// Index bounds select documents by field values, as a filter.
			if err := a.keys(doc, a.cmd.Lookup(k)); err != nil {
				return err
			}
		}
		switch name {
		case "distinct":
			key, ok := a.cmd.Lookup("key").StringValueOK()
			if !ok {
				return fmt.Errorf("distinct without a key")
			}
			// The reply's values are the key's values.
			a.outputs(doc.ref(normPath(key), "values", true), "")
		case "find":
			if p := a.cmd.Lookup("projection"); p.Type != 0 {
				a.useExprsIn(doc, p)
				doc = a.project(doc, p)
			}
			a.outputs(doc, "")
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
						sh, err := a.pipeline(nil, a.cmd.Lookup("pipeline"))
						a.outputs(sh, "")
						return err
					}
				}
			}
			a.add("monitor", target)
			return nil
		}
		a.add("select", tbl)
		in, err := a.source(tbl)
		if err != nil {
			return err
		}
		sh, err := a.pipeline(in, a.cmd.Lookup("pipeline"))
		a.outputs(sh, "")
		return err
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
		a.add("select", tbl)
		doc, err := a.source(tbl)
		if err != nil {
			return err
		}
		if rm, _ := a.cmd.Lookup("remove").BooleanOK(); rm {
			a.add("delete", tbl)
		} else {
			a.add("update", tbl)
			a.arrayFilters(tbl, a.cmd)
			if err := a.update(tbl, a.cmd.Lookup("update")); err != nil {
				return err
			}
		}
		q := a.cmd.Lookup("query")
		a.st.Bounded = bounds(q)
		if err := a.filter(doc, q); err != nil {
			return err
		}
		if err := a.keys(doc, a.cmd.Lookup("sort")); err != nil {
			return err
		}
		if p := a.cmd.Lookup("fields"); p.Type != 0 {
			a.useExprsIn(doc, p)
			doc = a.project(doc, p)
		}
		// The reply's value is the document, before or after the update.
		a.outputs(doc, "value")
		return nil
	case "bulkWrite":
		return a.bulkWrite()
	case "create":
		if err := needColl(); err != nil {
			return err
		}
		a.add("create", tbl)
		if on, ok := a.cmd.Lookup("viewOn").StringValueOK(); ok {
			// A view reads its source with the creator's pipeline.
			src := a.table(a.db, on)
			a.add("select", src)
			in, err := a.source(src)
			if err != nil {
				return err
			}
			sh, err := a.pipeline(in, a.cmd.Lookup("pipeline"))
			// The view shows its fields under a name of its own.
			a.flowsInto(sh)
			return err
		}
		return nil
	case "createIndexes", "collMod", "convertToCapped", "validate":
		if err := needColl(); err != nil {
			return err
		}
		a.add("alter", tbl)
		if on, ok := a.cmd.Lookup("viewOn").StringValueOK(); ok || a.cmd.Lookup("pipeline").Type != 0 {
			// collMod redefines a view: like create, its fields show
			// under the view's name.
			src := a.table(a.db, on)
			if on == "" {
				return fmt.Errorf("collMod of a view's pipeline without viewOn: refused (sluice cannot tell what it reads)")
			}
			a.add("select", src)
			in, err := a.source(src)
			if err != nil {
				return err
			}
			sh, err := a.pipeline(in, a.cmd.Lookup("pipeline"))
			a.flowsInto(sh)
			return err
		}
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
		if err := a.filter(wholeDoc(t), q); err != nil {
			return err
		}
		if isUpdate {
			a.arrayFilters(t, d)
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
		// The pipeline's fields are written back, readable under their
		// new names.
		sh, err := a.stages(wholeDoc(t), u)
		a.flowsInto(sh.moved())
		return err
	}
	if d, ok := u.DocumentOK(); ok {
		if r, ok := d.Lookup("$rename").DocumentOK(); ok {
			// {$rename: {ssn: "x"}} moves a value to a new name.
			elems, _ := r.Elements()
			for _, e := range elems {
				a.useRef(wholeDoc(t), e.Key())
			}
		}
		for _, op := range []string{"$pull", "$pullAll"} {
			// {$pull: {cards: {number: "4111"}}}: how many documents it
			// changed says whether a value is there.
			if r, ok := d.Lookup(op).DocumentOK(); ok {
				if err := a.fields(wholeDoc(t), "", r); err != nil {
					return err
				}
			}
		}
	}
	return a.code(u)
}

// arrayFilters in an update pick array elements by their fields' values
// under identifiers sluice does not map to paths: any field may steer.
func (a *mongoAnalyzer) arrayFilters(t Object, d bsoncore.Document) {
	if d.Lookup("arrayFilters").Type != 0 {
		a.useRef(wholeDoc(t), "")
	}
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
			if err := a.filter(wholeDoc(obj), f); err != nil {
				return err
			}
			if e.Key() == "update" {
				a.arrayFilters(obj, op)
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
func (a *mongoAnalyzer) filter(sh docShape, v bsoncore.Value) error {
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
	return a.fields(sh, "", d)
}

// fields walks a filter: field paths are uses; $and/$or/$nor and
// $elemMatch recurse.
func (a *mongoAnalyzer) fields(sh docShape, prefix string, d bsoncore.Document) error {
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
					if err := a.fields(sh, prefix, sub); err != nil {
						return err
					}
				}
			}
		case k == "$elemMatch":
			if sub, ok := e.Value().DocumentOK(); ok {
				if err := a.fields(sh, prefix, sub); err != nil {
					return err
				}
			}
		case strings.HasPrefix(k, "$"):
			switch {
			case k == "$text" || k == "$jsonSchema":
				// A text index's fields, or a schema's properties and
				// patterns: any field may steer the match.
				a.useRef(sh, "")
			case k == "$expr" || mongoCode[k]:
				// Expressions name fields as "$path" strings.
				a.useExpr(sh, e.Value())
			}
		default:
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			a.useRef(sh, path)
			if sub, ok := e.Value().DocumentOK(); ok {
				if err := a.fields(sh, path, sub); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// keys records sort (or group) keys.
func (a *mongoAnalyzer) keys(sh docShape, v bsoncore.Value) error {
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
		a.useRef(sh, e.Key())
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
