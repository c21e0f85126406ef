package policy

import (
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sluicedb/sluice/extproc/session"
)

var mongoDemo = session.Target{Name: "docs", Protocol: "mongodb", Tags: map[string]string{"env": "dev"}}

// TestMongoCommandModel decides commands of every class of the model with
// the default policies: reads pass for analysts, writes for migrators, an
// unbounded delete, DDL, server-side code, administration and any command
// outside the model are refused.
func TestMongoCommandModel(t *testing.T) {
	e := defaultEngine(t)
	for _, tc := range []struct {
		group, cmd string
		seqs       map[string][]string
		want       Outcome
		policy     string // a policy the decision names, or a reason fragment
	}{
		{"analysts", `{"find": "users", "filter": {"age": {"$gt": 30}}, "$db": "app"}`, nil, Allow, ""},
		{"analysts", `{"aggregate": "users", "pipeline": [{"$match": {"a": 1}}, {"$group": {"_id": "$city", "n": {"$sum": 1}}}], "cursor": {}}`, nil, Allow, ""},
		{"analysts", `{"count": "users", "query": {}}`, nil, Allow, ""},
		{"analysts", `{"distinct": "users", "key": "city"}`, nil, Allow, ""},
		{"analysts", `{"hello": 1, "client": {"driver": {"name": "pymongo"}}}`, nil, Allow, ""},
		{"analysts", `{"ping": 1}`, nil, Allow, ""},
		{"analysts", `{"listCollections": 1}`, nil, Allow, ""},
		{"analysts", `{"insert": "users"}`, map[string][]string{"documents": {`{"a": 1}`}}, Deny, ""},
		{"migrators", `{"insert": "users"}`, map[string][]string{"documents": {`{"a": 1}`}}, Allow, ""},
		{"migrators", `{"insert": "users", "documents": [{"a": 1}]}`, nil, Allow, ""},
		{"migrators", `{"delete": "users"}`, map[string][]string{"deletes": {`{"q": {}, "limit": 0}`}}, Approval, "no-unbounded-delete"},
		{"migrators", `{"delete": "users", "deletes": [{"q": {}, "limit": 0}]}`, nil, Approval, "no-unbounded-delete"},
		{"migrators", `{"delete": "users", "deletes": [{"q": {"_id": 1}, "limit": 1}, {"q": {}, "limit": 0}]}`, nil, Approval, "no-unbounded-delete"},
		{"migrators", `{"delete": "users", "deletes": [{"q": {"_id": 1}, "limit": 1}]}`, nil, Allow, ""},
		{"migrators", `{"update": "users", "updates": [{"q": {"_id": 1}, "u": {"$set": {"a": 2}}}]}`, nil, Allow, ""},
		{"migrators", `{"findAndModify": "users", "query": {}, "remove": true}`, nil, Approval, "no-unbounded-delete"},
		{"migrators", `{"bulkWrite": 1, "ops": [{"delete": 0, "filter": {}, "multi": true}], "nsInfo": [{"ns": "app.users"}]}`, nil, Approval, "no-unbounded-delete"},
		{"analysts", `{"drop": "users"}`, nil, Deny, "no-ddl"},
		// A sequence the command does not define is a body field the
		// server reads: a pipeline, a pipeline update.
		{"analysts", `{"aggregate": "users", "cursor": {}}`, map[string][]string{"pipeline": {`{"$project": {"x": "$ssn"}}`}}, Deny, "sequence"},
		{"migrators", `{"findAndModify": "users", "query": {"_id": 1}}`, map[string][]string{"update": {`{"$set": {"x": "$ssn"}}`}}, Deny, "sequence"},
		{"migrators", `{"insert": "users"}`, map[string][]string{"deletes": {`{"q": {}, "limit": 0}`}}, Deny, "sequence"},
		{"migrators", `{"drop": "users"}`, nil, Approval, ""},
		{"analysts", `{"dropDatabase": 1}`, nil, Deny, "no-ddl"},
		{"analysts", `{"renameCollection": "app.users", "to": "app.old"}`, nil, Deny, "no-ddl"},
		{"analysts", `{"createIndexes": "users", "indexes": [{"key": {"a": 1}, "name": "a"}]}`, nil, Deny, "no-ddl"},
		{"migrators", `{"find": "users", "filter": {"$where": "this.a > 1"}}`, nil, Deny, "no-admin"},
		{"migrators", `{"find": "users", "filter": {"$expr": {"$function": {"body": "function(){return true}", "args": [], "lang": "js"}}}}`, nil, Deny, "no-admin"},
		{"migrators", `{"aggregate": "users", "pipeline": [{"$group": {"_id": 1, "x": {"$accumulator": {"init": "function(){}"}}}}], "cursor": {}}`, nil, Deny, "no-admin"},
		{"migrators", `{"mapReduce": "users", "map": "function(){}", "reduce": "function(){}", "out": {"inline": 1}}`, nil, Deny, "no-admin"},
		{"migrators", `{"update": "users", "updates": [{"q": {"_id": 1}, "u": [{"$set": {"x": {"$function": {"body": "f", "args": [], "lang": "js"}}}}]}]}`, nil, Deny, "no-admin"},
		{"migrators", `{"createUser": "eve", "pwd": "x", "roles": ["root"]}`, nil, Deny, "no-admin"},
		{"migrators", `{"setParameter": 1, "logLevel": 5}`, nil, Deny, "no-admin"},
		{"migrators", `{"currentOp": 1}`, nil, Deny, "no-admin"},
		{"migrators", `{"aggregate": 1, "pipeline": [{"$currentOp": {}}], "cursor": {}}`, nil, Deny, "no-admin"},
		{"analysts", `{"aggregate": "users", "pipeline": [{"$out": "copy"}], "cursor": {}}`, nil, Deny, ""},
		{"analysts", `{"aggregate": "users", "pipeline": [{"$merge": {"into": "copy"}}], "cursor": {}}`, nil, Deny, ""},
		{"analysts", `{"aggregate": "users", "pipeline": [{"$lookup": {"from": "orders", "localField": "_id", "foreignField": "uid", "as": "o"}}], "cursor": {}}`, nil, Allow, ""},
		{"analysts", `{"aggregate": "users", "pipeline": [{"$facet": {"a": [{"$match": {"x": 1}}], "b": [{"$out": "copy"}]}}], "cursor": {}}`, nil, Deny, "INSERT"},
		{"analysts", `{"aggregate": "users", "pipeline": [{"$unknownStage": {}}], "cursor": {}}`, nil, Deny, "not in sluice's MongoDB model"},
		{"analysts", `{"frobnicate": "users"}`, nil, Deny, "not in sluice's MongoDB model"},
		{"analysts", `{"eval": "db.dropDatabase()"}`, nil, Deny, "no-admin"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			cmd, err := MongoCommand(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			seqs := map[string][]bsoncore.Document{}
			for id, docs := range tc.seqs {
				for _, d := range docs {
					doc, err := MongoCommand(d)
					if err != nil {
						t.Fatal(err)
					}
					seqs[id] = append(seqs[id], doc)
				}
			}
			a := e.Session(session.Identity{Subject: "agent", Groups: []string{tc.group}}, mongoDemo)
			d := a.AuthorizeMongo("app", cmd, seqs, tc.cmd)
			if d.Outcome != tc.want {
				t.Fatalf("%s: %v (%s; policies %v), want %v", tc.group, d.Outcome, d.Reason, d.Policies, tc.want)
			}
			if tc.policy != "" && !slices.Contains(d.Policies, tc.policy) && !strings.Contains(d.Reason, tc.policy) {
				t.Fatalf("%s: %s (policies %v), want %q named", tc.group, d.Reason, d.Policies, tc.policy)
			}
		})
	}
}

// TestMongoPipelineReadsEveryCollection: collections read inside $lookup,
// $graphLookup, $unionWith and $facet sub-pipelines are all selected.
func TestMongoPipelineReadsEveryCollection(t *testing.T) {
	cmd, err := MongoCommand(`{"aggregate": "users", "pipeline": [
		{"$lookup": {"from": "orders", "pipeline": [{"$unionWith": {"coll": "refunds", "pipeline": [{"$match": {"x": 1}}]}}], "as": "o"}},
		{"$graphLookup": {"from": "people", "startWith": "$boss", "connectFromField": "boss", "connectToField": "_id", "as": "chain"}},
		{"$facet": {"f": [{"$unionWith": "secrets"}]}},
		{"$merge": {"into": {"db": "other", "coll": "sink"}}}
	], "cursor": {}}`)
	if err != nil {
		t.Fatal(err)
	}
	an := AnalyzeMongo("app", cmd, nil)
	if an.Err != nil {
		t.Fatal(an.Err)
	}
	var got []string
	for _, r := range an.Statements[0].Requests {
		got = append(got, r.Action+" "+r.Object.Schema+"."+r.Object.Name)
	}
	for _, want := range []string{"select app.users", "select app.orders", "select app.refunds", "select app.people", "select app.secrets", "insert other.sink", "update other.sink"} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q in %v", want, got)
		}
	}
}

// TestMongoFiltersAreUses: filter and sort fields, in any nesting, are the
// statement's uses (a masked one is an inference channel).
func TestMongoFiltersAreUses(t *testing.T) {
	cmd, _ := MongoCommand(`{"find": "users", "filter": {"$or": [{"email": "a@b"}, {"profile.ssn": {"$exists": true}}], "tags": {"$elemMatch": {"k": "x"}}, "$expr": {"$eq": ["$card", 1]}}, "sort": {"phone": 1}}`)
	an := AnalyzeMongo("app", cmd, nil)
	var got []string
	for _, c := range an.Statements[0].Uses {
		got = append(got, c.Name)
	}
	for _, want := range []string{"email", "profile.ssn", "tags", "tags.k", "card", "phone"} {
		if !slices.Contains(got, want) {
			t.Errorf("missing use %q in %v", want, got)
		}
	}
}

// TestMongoAmbiguousOrUnboundingFilters: a field named twice (sluice and
// the server could read different ones) is refused, and filters that may
// match every document are unbounded, like {}.
func TestMongoAmbiguousOrUnboundingFilters(t *testing.T) {
	e := defaultEngine(t)
	a := e.Session(session.Identity{Subject: "m", Groups: []string{"migrators"}}, mongoDemo)
	dupQ := bsoncore.NewDocumentBuilder().AppendInt32("_id", 1).Build()
	del := bsoncore.NewDocumentBuilder().AppendDocument("q", dupQ).AppendDocument("q", bsoncore.NewDocumentBuilder().Build()).AppendInt32("limit", 0).Build()
	for name, cmd := range map[string]bsoncore.Document{
		"two q": bsoncore.NewDocumentBuilder().AppendString("delete", "users").
			AppendArray("deletes", bsoncore.NewArrayBuilder().AppendDocument(del).Build()).AppendString("$db", "app").Build(),
		"two $db": bsoncore.NewDocumentBuilder().AppendString("find", "users").AppendString("$db", "app").AppendString("$db", "admin").Build(),
	} {
		if d := a.AuthorizeMongo("app", cmd, nil, name); d.Outcome != Deny || !strings.Contains(d.Reason, "appears twice") {
			t.Errorf("%s: %v %s", name, d.Outcome, d.Reason)
		}
	}
	for _, q := range []string{`{}`, `{"$comment": "all"}`, `{"$expr": true}`, `{"$or": [{"a": 1}, {}]}`, `{"$nor": [{"a": 1}]}`, `{"$and": [{"$comment": "x"}]}`} {
		cmd, err := MongoCommand(`{"delete": "users", "deletes": [{"q": ` + q + `, "limit": 0}]}`)
		if err != nil {
			t.Fatal(err)
		}
		// Unbounded: held for a human (no-unbounded-delete yields only to
		// an approval).
		if d := a.AuthorizeMongo("app", cmd, nil, q); d.Outcome != Approval || !slices.Contains(d.Policies, "no-unbounded-delete") {
			t.Errorf("delete with filter %s: %v %s %v", q, d.Outcome, d.Reason, d.Policies)
		}
	}
	for _, q := range []string{`{"a": 1}`, `{"$and": [{"$comment": "x"}, {"a": 1}]}`, `{"$or": [{"a": 1}, {"b": 2}]}`} {
		cmd, _ := MongoCommand(`{"delete": "users", "deletes": [{"q": ` + q + `, "limit": 0}]}`)
		if d := a.AuthorizeMongo("app", cmd, nil, q); d.Outcome != Allow {
			t.Errorf("delete with filter %s: %v %s", q, d.Outcome, d.Reason)
		}
	}
}

// TestMongoBulkWriteFieldsNameTheirNamespace: a bulkWrite (run on admin)
// steers by fields of the collections its ops name, not of admin.
func TestMongoBulkWriteFieldsNameTheirNamespace(t *testing.T) {
	cmd, _ := MongoCommand(`{"bulkWrite": 1, "ops": [{"delete": 0, "filter": {"email": "x"}}], "nsInfo": [{"ns": "other.people"}]}`)
	an := AnalyzeMongo("admin", cmd, nil)
	if an.Err != nil || len(an.Statements[0].Uses) != 1 || an.Statements[0].Uses[0] != (Column{Schema: "other", Table: "people", Name: "email"}) {
		t.Fatalf("uses %v (%v)", an.Statements, an.Err)
	}
}
