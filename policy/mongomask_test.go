package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/extproc/session"
)

var mongoMaskDemo = session.Target{Name: "demo-mongo", Protocol: "mongodb"}

// TestMongoMaskingFollowsFields plans the masks of returned documents
// wherever a command or pipeline puts a tagged field (entity data tags
// customers.email, .ssn, .profile.phone and .cards.number), and refuses
// tagged fields used to filter, sort, group or write elsewhere, and stages
// whose fields sluice cannot follow.
func TestMongoMaskingFollowsFields(t *testing.T) {
	e := defaultEngine(t)
	for _, tc := range []struct {
		group, cmd string
		masked     []string // path=strategy, in any order; nil with deny
		deny       string   // a fragment of the refusal
	}{
		{"analysts", `{"find": "customers"}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"find": "orders"}`, []string{}, ""},
		{"analysts", `{"find": "customers", "projection": {"email": 1}}`, []string{"email=email"}, ""},
		// Excluded fields are still planned (over the whole document): masking
		// a field that is not there changes nothing.
		{"analysts", `{"find": "customers", "projection": {"email": 0, "ssn": 0}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"find": "customers", "projection": {"e": "$email", "_id": 0}}`, []string{"e=email"}, ""},
		{"analysts", `{"find": "customers", "projection": {"e": {"$concat": ["$email", "x"]}}}`, []string{"e=redact"}, ""},
		{"analysts", `{"find": "customers", "projection": {"profile": 1}}`, []string{"profile.phone=partial:4"}, ""},
		{"analysts", `{"find": "customers", "filter": {"ssn": "123-45-6789"}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"profile": {"phone": "1", "tier": "g"}}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"profile.phone": {"$regex": "^555"}}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"$expr": {"$eq": ["$email", "a@b.c"]}}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "sort": {"email": 1}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "projection": {"cards": {"$elemMatch": {"number": "4111"}}}}`, nil, "inference"},
		{"analysts", `{"count": "customers", "query": {"email": "a@b.c"}}`, nil, "inference"},
		{"analysts", `{"distinct": "customers", "key": "email"}`, []string{"values=email"}, ""},
		{"analysts", `{"distinct": "customers", "key": "profile"}`, []string{"values.phone=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": "$ssn"}}], "cursor": {}}`, []string{"x=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": "$ssn"}}, {"$match": {"x": "1"}}], "cursor": {}}`, nil, "inference"},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$group": {"_id": "$city", "emails": {"$push": "$email"}, "first": {"$first": "$ssn"}}}], "cursor": {}}`, []string{"emails=email", "first=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$group": {"_id": "$email"}}], "cursor": {}}`, nil, "inference"},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$addFields": {"p": "$profile"}}, {"$unset": ["email", "ssn", "profile", "cards"]}], "cursor": {}}`, []string{"p.phone=partial:4", "email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"n": {"$concat": ["$name", "$email"]}}}], "cursor": {}}`, []string{"n=redact"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$unwind": "$cards"}, {"$project": {"c": "$cards.number"}}], "cursor": {}}`, []string{"c=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$replaceRoot": {"newRoot": "$profile"}}], "cursor": {}}`, []string{"phone=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$replaceWith": {"$mergeObjects": ["$profile", {"a": 1}]}}], "cursor": {}}`, nil, "cannot follow"},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$bucketAuto": {"groupBy": "$age", "buckets": 2, "output": {"e": {"$push": "$email"}}}}], "cursor": {}}`, nil, "cannot follow"},
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$bucketAuto": {"groupBy": "$total", "buckets": 2}}], "cursor": {}}`, []string{}, ""},
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$lookup": {"from": "customers", "localField": "customer", "foreignField": "_id", "as": "c"}}], "cursor": {}}`, []string{"c.email=email", "c.ssn=partial:4", "c.profile.phone=partial:4", "c.cards.number=partial:4"}, ""},
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$lookup": {"from": "customers", "localField": "email", "foreignField": "email", "as": "c"}}], "cursor": {}}`, nil, "inference"},
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$lookup": {"from": "customers", "pipeline": [{"$match": {"ssn": "1"}}], "as": "c"}}], "cursor": {}}`, nil, "inference"},
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$lookup": {"from": "customers", "pipeline": [{"$project": {"s": "$ssn"}}], "as": "c"}}], "cursor": {}}`, []string{"c.s=partial:4"}, ""},
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$unionWith": "customers"}], "cursor": {}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$facet": {"a": [{"$project": {"x": "$email"}}]}}], "cursor": {}}`, []string{"a.x=email"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$sortByCount": "$email"}], "cursor": {}}`, nil, "inference"},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$count": "n"}], "cursor": {}}`, []string{}, ""},
		{"migrators", `{"aggregate": "customers", "pipeline": [{"$out": "copy"}], "cursor": {}}`, nil, "inference"},
		{"migrators", `{"aggregate": "customers", "pipeline": [{"$project": {"x": "$email"}}, {"$merge": {"into": "copy"}}], "cursor": {}}`, nil, "inference"},
		{"migrators", `{"update": "customers", "updates": [{"q": {"_id": 1}, "u": [{"$set": {"x": "$ssn"}}]}]}`, nil, "inference"},
		{"migrators", `{"update": "customers", "updates": [{"q": {"_id": 1}, "u": [{"$set": {"status": "done"}}]}]}`, []string{}, ""},
		{"migrators", `{"update": "customers", "updates": [{"q": {"_id": 1}, "u": {"$rename": {"ssn": "x"}}}]}`, nil, "inference"},
		{"migrators", `{"update": "customers", "updates": [{"q": {"_id": 1}, "u": {"$set": {"x": "$ssn"}}}]}`, []string{}, ""},
		{"migrators", `{"findAndModify": "customers", "query": {"_id": 1}, "update": {"$set": {"a": 1}}}`, []string{"value.email=email", "value.ssn=partial:4", "value.profile.phone=partial:4", "value.cards.number=partial:4"}, ""},
		{"migrators", `{"findAndModify": "customers", "query": {"_id": 1}, "update": {"$set": {"a": 1}}, "fields": {"name": 1}}`, []string{}, ""},
		// The whole document by variable, fields by name, array positions.
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": "$$ROOT"}}], "cursor": {}}`, []string{"x.email=email", "x.ssn=partial:4", "x.profile.phone=partial:4", "x.cards.number=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": "$$CURRENT.ssn"}}], "cursor": {}}`, []string{"x=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$replaceRoot": {"newRoot": "$$ROOT"}}], "cursor": {}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": {"$getField": "ssn"}}}], "cursor": {}}`, []string{"x=redact"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": {"$getField": {"field": "ssn", "input": "$$ROOT"}}}}], "cursor": {}}`, []string{"x=redact"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": {"$map": {"input": "$cards", "as": "c", "in": "$$c.number"}}}}], "cursor": {}}`, []string{"x=redact"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$project": {"x": {"$objectToArray": "$profile"}}}], "cursor": {}}`, []string{"x=redact"}, ""},
		{"analysts", `{"find": "customers", "filter": {"cards.0.number": "4111"}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"$text": {"$search": "customer1"}}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"$jsonSchema": {"properties": {"ssn": {"pattern": "^001"}}}}}`, nil, "inference"},
		{"analysts", `{"find": "orders", "filter": {"$text": {"$search": "x"}}}`, []string{}, ""},
		{"analysts", `{"find": "customers", "filter": {"$expr": {"$eq": [{"$getField": "ssn"}, "1"]}}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"$expr": {"$eq": ["$$ROOT.ssn", "1"]}}}`, nil, "inference"},
		{"analysts", `{"find": "customers", "filter": {"cards.brand": "visa"}, "projection": {"cards.$": 1}}`, []string{"cards.number=partial:4"}, ""},
		// Projections the server may read either way: both readings masked.
		{"analysts", `{"find": "customers", "projection": {"profile": {"phone": 0}}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"find": "customers", "projection": {"ssn": {"$numberDecimal": "0"}}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"find": "customers", "projection": {"cards": {"$slice": 1}, "_id": 0}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"find": "customers", "projection": {"_id": "$ssn"}}`, []string{"_id=partial:4"}, ""},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$addFields": {"e": "$email"}}, {"$project": {"e": 0.5}}], "cursor": {}}`, []string{"e=email", "email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"find": "customers", "hint": {"email": 1}, "projection": {"_id": 1, "k": {"$meta": "indexKey"}}}`, []string{"k=redact", "email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
		{"analysts", `{"distinct": "customers", "key": "cards.0.number"}`, []string{"values=partial:4"}, ""},
		// A stage sluice does not follow stays untraceable downstream.
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$replaceWith": {"$mergeObjects": ["$$ROOT"]}}, {"$project": {"ssn": 1, "email": 1}}], "cursor": {}}`, nil, "cannot follow"},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$setWindowFields": {"output": {"x": {"$push": "$ssn", "window": {"documents": [0, 0]}}}}}, {"$project": {"x": 1}}], "cursor": {}}`, nil, "cannot follow"},
		{"analysts", `{"aggregate": "customers", "pipeline": [{"$bucketAuto": {"groupBy": "$_id", "buckets": 2, "output": {"e": {"$push": "$email"}}}}, {"$group": {"_id": null, "all": {"$push": "$e"}}}], "cursor": {}}`, nil, "cannot follow"},
		// The server's own data.
		{"analysts", `{"aggregate": "orders", "pipeline": [{"$lookup": {"from": {"db": "local", "coll": "oplog.rs"}, "pipeline": [], "as": "o"}}], "cursor": {}}`, nil, "another database"},
		{"analysts", `{"find": "system.users"}`, nil, "internal"},
		{"analysts", `{"find": "system.profile"}`, nil, "internal"},
		// Writers' inference channels.
		{"migrators", `{"update": "customers", "updates": [{"q": {"_id": 1}, "u": {"$pull": {"cards": {"number": "4111"}}}}]}`, nil, "inference"},
		{"migrators", `{"update": "customers", "updates": [{"q": {"_id": 1}, "u": {"$set": {"cards.$[c].brand": "x"}}, "arrayFilters": [{"c.number": "4111"}]}]}`, nil, "inference"},
		{"analysts", `{"find": "customers", "projection": {"cards.0": 0}}`, []string{"email=email", "ssn=partial:4", "profile.phone=partial:4", "cards.number=partial:4"}, ""},
	} {
		a := e.Session(session.Identity{Subject: "a", Groups: []string{tc.group}}, mongoMaskDemo)
		cmd, err := MongoCommand(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		d := a.AuthorizeMongo("sluice_demo", cmd, nil, tc.cmd)
		if tc.masked == nil {
			if d.Allowed() || !strings.Contains(d.Reason, tc.deny) {
				t.Errorf("%s: want refused (%q), got %v: %s", tc.cmd, tc.deny, d.Outcome, d.Reason)
			}
			continue
		}
		if !d.Allowed() {
			t.Errorf("%s: refused: %s", tc.cmd, d.Reason)
			continue
		}
		checkMasked(t, tc.cmd, d, tc.masked)
	}
}

// views are the server's view definitions, as a session learns them.
type views map[string]MongoView

func (v views) MongoView(db, coll string) (MongoView, bool) {
	x, ok := v[db+"."+coll]
	return x, ok
}

// TestMongoViewsAreReadThroughTheirDefinitions: a view over customers
// (made outside sluice) masks what its pipeline moves, filters on its
// masked outputs are refused, a collection not known yet is named for the
// session to learn, and a view of a view follows both.
func TestMongoViewsAreReadThroughTheirDefinitions(t *testing.T) {
	e := defaultEngine(t)
	a := e.Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, mongoMaskDemo)
	pipe := func(js string) MongoView {
		d, err := MongoCommand(`{"p": ` + js + `}`)
		if err != nil {
			t.Fatal(err)
		}
		return MongoView{Pipeline: d.Lookup("p")}
	}
	contacts := pipe(`[{"$match": {"ssn": {"$exists": true}}}, {"$project": {"who": "$name", "mail": "$email", "tax": "$ssn"}}]`)
	contacts.ViewOn = "customers"
	again := pipe(`[{"$project": {"m": "$mail"}}]`)
	again.ViewOn = "contacts"
	known := views{"sluice_demo.customers": {}, "sluice_demo.orders": {}, "sluice_demo.contacts": contacts, "sluice_demo.again": again}
	for _, tc := range []struct {
		cmd        string
		masked     []string
		deny       string
		unresolved string
	}{
		{`{"find": "contacts"}`, []string{"mail=email", "tax=partial:4"}, "", ""},
		{`{"aggregate": "contacts", "pipeline": [{"$project": {"x": "$tax"}}], "cursor": {}}`, []string{"x=partial:4"}, "", ""},
		{`{"find": "contacts", "filter": {"mail": "a@b.c"}}`, nil, "inference", ""},
		{`{"find": "again"}`, []string{"m=email"}, "", ""},
		{`{"aggregate": "orders", "pipeline": [{"$unionWith": "contacts"}], "cursor": {}}`, []string{"mail=email", "tax=partial:4"}, "", ""},
		{`{"find": "unknown_coll"}`, nil, "is a view", "sluice_demo.unknown_coll"},
		{`{"aggregate": "orders", "pipeline": [{"$lookup": {"from": "mystery", "localField": "a", "foreignField": "b", "as": "m"}}], "cursor": {}}`, nil, "is a view", "sluice_demo.mystery"},
	} {
		cmd, err := MongoCommand(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		d := a.AuthorizeMongoIn(known, "sluice_demo", cmd, nil, tc.cmd)
		if tc.masked == nil {
			if d.Allowed() || !strings.Contains(d.Reason, tc.deny) || strings.Join(d.Unresolved, ",") != tc.unresolved {
				t.Errorf("%s: want refused (%q, unresolved %q), got %v: %s %v", tc.cmd, tc.deny, tc.unresolved, d.Outcome, d.Reason, d.Unresolved)
			}
			continue
		}
		if !d.Allowed() {
			t.Errorf("%s: refused: %s", tc.cmd, d.Reason)
			continue
		}
		checkMasked(t, tc.cmd, d, tc.masked)
	}
	// Redefining a view through collMod is a view's creation: its fields
	// show under the view's name.
	mig := e.Session(session.Identity{Subject: "m", Groups: []string{"migrators"}}, mongoMaskDemo)
	cmd, _ := MongoCommand(`{"collMod": "contacts", "viewOn": "customers", "pipeline": [{"$project": {"x": "$ssn"}}]}`)
	if d := mig.AuthorizeMongoIn(known, "sluice_demo", cmd, nil, "collMod"); d.Outcome != Deny || !strings.Contains(d.Reason, "inference") {
		t.Errorf("collMod repointing a view at ssn: %v %s", d.Outcome, d.Reason)
	}
}

// checkMasked compares a decision's masks (path=strategy, any order) with
// want.
func checkMasked(t *testing.T, cmd string, d Decision, want []string) {
	t.Helper()
	var got []string
	for _, ms := range d.Masked {
		for _, m := range ms {
			got = append(got, m.Name+"="+m.Strategy)
		}
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if got = slices.Compact(got); !slices.Equal(got, want) {
		t.Errorf("%s: masked %v, want %v", cmd, got, want)
	}
}
