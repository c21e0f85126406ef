package policy

import (
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// AuthorizeMongo decides one MongoDB command run in database db; text is
// the command as the audit trail and policies (context.statement.text) see
// it. Collections are read as stored (see AuthorizeMongoIn for views).
func (a *Authorizer) AuthorizeMongo(db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document, text string) Decision {
	return a.AuthorizeMongoIn(nil, db, cmd, seqs, text)
}

// AuthorizeMongoIn decides one MongoDB command, reading views through
// their definitions (views; nil: none). The decision is not cached: a
// command's values decide its filters. Decision.Masked[0] names, by field
// path in the returned documents (or, for distinct and findAndModify, in
// the reply), what to mask. A command that reads a collection views does
// not know is refused with Decision.Unresolved naming them: the session
// learns them from the server and decides again.
func (a *Authorizer) AuthorizeMongoIn(views MongoViews, db string, cmd bsoncore.Document, seqs map[string][]bsoncore.Document, text string) Decision {
	an, unresolved := analyzeMongo(views, db, cmd, seqs)
	if len(unresolved) > 0 {
		return Decision{Outcome: Deny, Reason: "sluice could not learn from the server whether " + strings.Join(unresolved, ", ") + " is a view (reading a view reads its source): refused", Unresolved: unresolved}
	}
	if an.Err != nil {
		return a.shadowed(Decision{Outcome: Deny, Unparseable: true, Reason: an.Err.Error()})
	}
	set := a.engine.set.Load()
	for i := range an.Statements {
		mongoExpand(&an.Statements[i], func(schema, table string) []Column { return a.declaredColumns(schema, table, set) })
	}
	d := a.decide(an.Statements, text)
	for _, ms := range d.Masked {
		if slices.ContainsFunc(ms, func(m MaskedColumn) bool { return m.Name == mongoOpaque }) {
			d = Decision{Outcome: Deny, Reason: "the pipeline has a stage whose fields sluice cannot follow ($bucket, $setWindowFields, $replaceRoot of an expression, …) over masked fields: refused rather than passed unmasked", Kinds: d.Kinds, Tables: d.Tables}
			break
		}
	}
	return a.shadowed(d)
}

// MongoView is a MongoDB view's definition: reading it runs Pipeline over
// ViewOn. A plain collection (or one that does not exist) has no ViewOn.
type MongoView struct {
	ViewOn   string
	Pipeline bsoncore.Value
}

// MongoViews tells the analyzer which collections are views, as the
// server said (known false: not asked yet).
type MongoViews interface {
	MongoView(db, coll string) (v MongoView, known bool)
}

// source is the shape of the documents reading t gives: a collection's
// stored documents, or a view's pipeline over its source (masks follow the
// source's tagged fields; reading a view also reads its source).
func (a *mongoAnalyzer) source(t Object) (docShape, error) { return a.sourceAt(t, 0) }

func (a *mongoAnalyzer) sourceAt(t Object, depth int) (docShape, error) {
	if a.views == nil {
		return wholeDoc(t), nil
	}
	v, known := a.views.MongoView(t.Schema, t.Name)
	if !known {
		a.unresolved = append(a.unresolved, t.Schema+"."+t.Name)
		return wholeDoc(t), nil
	}
	if v.ViewOn == "" {
		return wholeDoc(t), nil
	}
	if depth >= 16 {
		return nil, fmt.Errorf("views nested deeper than 16: refused")
	}
	src := a.table(t.Schema, v.ViewOn)
	a.add("select", src)
	in, err := a.sourceAt(src, depth+1)
	if err != nil || v.Pipeline.Type == 0 {
		return in, err
	}
	// The view's own filters are its definition, not the agent's choice:
	// they steer nothing the agent asked.
	uses := a.st.Uses
	sh, err := a.stages(in, v.Pipeline)
	a.st.Uses = uses
	return sh, err
}
