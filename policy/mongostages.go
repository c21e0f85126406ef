package policy

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// mongoStages are the pipeline stages sluice reads; any other is refused.
var mongoStages = map[string]bool{
	"$match": true, "$project": true, "$addFields": true, "$set": true, "$unset": true, "$group": true,
	"$sort": true, "$limit": true, "$skip": true, "$unwind": true, "$lookup": true, "$graphLookup": true,
	"$unionWith": true, "$facet": true, "$count": true, "$sortByCount": true, "$bucket": true,
	"$bucketAuto": true, "$replaceRoot": true, "$replaceWith": true, "$sample": true, "$redact": true,
	"$densify": true, "$fill": true, "$setWindowFields": true, "$geoNear": true, "$documents": true,
	"$out": true, "$merge": true, "$collStats": true, "$indexStats": true,
}

func (a *mongoAnalyzer) pipeline(in docShape, v bsoncore.Value) (docShape, error) {
	if _, ok := v.ArrayOK(); !ok {
		return nil, fmt.Errorf("aggregate without a pipeline array")
	}
	return a.stages(in, v)
}

// stages accounts for each stage: collections other stages read, targets
// of $out and $merge, code, the fields filters, sorts and keys steer by,
// and the shape of the documents it passes on (see mongolineage.go).
func (a *mongoAnalyzer) stages(sh docShape, v bsoncore.Value) (docShape, error) {
	arr, _ := v.ArrayOK()
	vals, err := arr.Values()
	if err != nil {
		return nil, err
	}
	for _, x := range vals {
		st, ok := x.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("a pipeline stage that is not a document")
		}
		elems, err := st.Elements()
		if err != nil || len(elems) != 1 {
			return nil, fmt.Errorf("a pipeline stage must have exactly one field")
		}
		name, body := elems[0].Key(), elems[0].Value()
		if !mongoStages[name] {
			return nil, fmt.Errorf("pipeline stage %q is not in sluice's MongoDB model: refused", name)
		}
		if err := a.code(body); err != nil {
			return nil, err
		}
		if sh, err = a.stage(sh, name, body); err != nil {
			return nil, err
		}
	}
	return sh, nil
}

// stage accounts for one stage and returns the shape it passes on.
func (a *mongoAnalyzer) stage(sh docShape, name string, body bsoncore.Value) (docShape, error) {
	d, isDoc := body.DocumentOK()
	switch name {
	case "$match":
		return sh, a.filter(sh, body)
	case "$sort":
		return sh, a.keys(sh, body)
	case "$limit", "$skip", "$sample":
		return sh, nil
	case "$project":
		a.useExprsIn(sh, body)
		return a.project(sh, body), nil
	case "$addFields", "$set":
		return a.addFields(sh, body), nil
	case "$unset":
		if s, ok := body.StringValueOK(); ok {
			return sh.without(s), nil
		}
		names, _ := body.ArrayOK()
		vs, _ := names.Values()
		for _, n := range vs {
			if s, ok := n.StringValueOK(); ok {
				sh = sh.without(s)
			}
		}
		return sh, nil
	case "$unwind":
		// Each array element takes the array's place: same paths (a
		// masked array's elements are masked under its path).
		return sh, nil
	case "$group":
		if !isDoc {
			return nil, fmt.Errorf("$group is not a document")
		}
		return a.group(sh, body), nil
	case "$count":
		return nil, nil
	case "$sortByCount":
		a.useExpr(sh, body)
		return sh.expr(body, "_id"), nil
	case "$replaceRoot":
		return a.replaceRoot(sh, d.Lookup("newRoot")), nil
	case "$replaceWith":
		return a.replaceRoot(sh, body), nil
	case "$lookup", "$graphLookup":
		return a.lookup(sh, name, d)
	case "$unionWith":
		from, ok := body.StringValueOK()
		var p bsoncore.Value
		if !ok {
			from, _ = d.Lookup("coll").StringValueOK()
			p = d.Lookup("pipeline")
		}
		var other docShape
		if from != "" {
			t := a.table(a.db, from)
			a.add("select", t)
			var err error
			if other, err = a.source(t); err != nil {
				return nil, err
			}
		}
		if p.Type != 0 {
			var err error
			if other, err = a.stages(other, p); err != nil {
				return nil, err
			}
		}
		return append(sh, other...), nil
	case "$facet":
		if !isDoc {
			return nil, fmt.Errorf("$facet is not a document")
		}
		var out docShape
		facets, _ := d.Elements()
		for _, f := range facets {
			sub, err := a.stages(sh, f.Value())
			if err != nil {
				return nil, err
			}
			// Each facet is an array of its pipeline's documents.
			for _, g := range sub {
				if g.path != mongoOpaque {
					g.path = JoinPath(f.Key(), g.path)
				}
				out = append(out, g)
			}
		}
		return out, nil
	case "$out":
		db, target := a.namespace(a.db, body)
		if target == "" {
			return nil, fmt.Errorf("$out without a collection")
		}
		// $out replaces the collection: its documents go, new ones come,
		// readable there unmasked.
		a.add("insert", a.table(db, target))
		a.add("delete", a.table(db, target))
		a.flowsInto(sh)
		return nil, nil
	case "$merge":
		into := body
		if isDoc {
			into = d.Lookup("into")
		}
		db, target := a.namespace(a.db, into)
		if target == "" {
			return nil, fmt.Errorf("$merge without a collection")
		}
		if isDoc {
			if p := d.Lookup("whenMatched"); p.Type == bsoncore.TypeArray {
				if _, err := a.stages(wholeDoc(a.table(db, target)), p); err != nil {
					return nil, err
				}
			}
			a.useExpr(sh, d.Lookup("let"))
			if on, ok := d.Lookup("on").StringValueOK(); ok {
				a.useRef(sh, on)
			}
		}
		a.add("insert", a.table(db, target))
		a.add("update", a.table(db, target))
		a.flowsInto(sh)
		return nil, nil
	case "$documents":
		return nil, nil // literal documents
	case "$collStats", "$indexStats":
		return nil, nil // statistics, no fields
	}
	// $bucket, $bucketAuto, $setWindowFields, $densify, $fill, $redact,
	// $geoNear: their keys steer, and sluice does not follow their fields.
	if isDoc {
		for _, k := range []string{"groupBy", "partitionBy", "sortBy", "field", "partitionByFields", "near", "key"} {
			a.useExpr(sh, d.Lookup(k))
			if s, ok := d.Lookup(k).StringValueOK(); ok && !strings.HasPrefix(s, "$") {
				a.useRef(sh, s)
			}
		}
	}
	if name == "$redact" {
		a.useExpr(sh, body)
	}
	if name == "$geoNear" && isDoc {
		if err := a.filter(sh, d.Lookup("query")); err != nil {
			return nil, err
		}
	}
	return docShape{{path: mongoOpaque, src: sh.sources()}}, nil
}

// lookup accounts for $lookup and $graphLookup: the joined collection's
// documents land under "as"; the fields that match them steer.
func (a *mongoAnalyzer) lookup(sh docShape, name string, d bsoncore.Document) (docShape, error) {
	from, isName := d.Lookup("from").StringValueOK()
	if f := d.Lookup("from"); f.Type != 0 && !isName {
		// {db, coll}: another database (the oplog, on some servers).
		return nil, fmt.Errorf("%s from another database: refused", name)
	}
	var foreign docShape
	if from == "" {
		if _, ok := d.Lookup("pipeline").ArrayOK(); !ok {
			return nil, fmt.Errorf("%s without from", name)
		}
	} else {
		t := a.table(a.db, from)
		a.add("select", t)
		var err error
		if foreign, err = a.source(t); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"localField", "startWith"} {
		if v := d.Lookup(k); v.Type != 0 {
			if s, ok := v.StringValueOK(); ok && !strings.HasPrefix(s, "$") {
				a.useRef(sh, s)
			} else {
				a.useExpr(sh, v)
			}
		}
	}
	for _, k := range []string{"foreignField", "connectToField", "connectFromField"} {
		if s, ok := d.Lookup(k).StringValueOK(); ok {
			a.useRef(foreign, s)
		}
	}
	if m := d.Lookup("restrictSearchWithMatch"); m.Type != 0 {
		if err := a.filter(foreign, m); err != nil {
			return nil, err
		}
	}
	// let binds the local document's fields for the sub-pipeline, which
	// may match on them: uses.
	a.useExpr(sh, d.Lookup("let"))
	if p := d.Lookup("pipeline"); p.Type != 0 {
		var err error
		if foreign, err = a.stages(foreign, p); err != nil {
			return nil, err
		}
	}
	as, ok := d.Lookup("as").StringValueOK()
	if !ok || as == "" {
		return nil, fmt.Errorf("%s without as", name)
	}
	out := sh.without(as)
	for _, f := range foreign {
		if f.path != mongoOpaque {
			f.path = JoinPath(as, f.path)
		}
		out = append(out, f)
	}
	return out, nil
}
