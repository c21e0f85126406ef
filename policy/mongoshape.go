package policy

import (
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// mongoNames are keys whose string values name objects (collections,
// databases, fields to look up), kept in a command's normalized form;
// every other value is a literal and is replaced.
var mongoNames = map[string]bool{
	"$db": true, "from": true, "coll": true, "into": true, "db": true, "$out": true, "$merge": true,
	"$unionWith": true, "localField": true, "foreignField": true, "connectFromField": true,
	"connectToField": true, "as": true, "key": true, "collection": true, "to": true, "ns": true,
	"mechanism": true, "$unwind": true, "$sortByCount": true, "$count": true,
}

// MongoShape is a MongoDB command with its literal values replaced by "?":
// what the audit trail and approval fingerprints record, so a filter's
// values (an email, an id) stay out of them while the command's shape —
// its name, collection, fields, operators and stages — stays readable. The
// result is JSON-like text; arrays of literals collapse to ["?"].
func MongoShape(cmd bsoncore.Document) string {
	var b strings.Builder
	shapeDoc(&b, cmd, true, false)
	return b.String()
}

// expr: inside an aggregation expression, where "$path" strings name
// fields; in a query filter they are values like any other.
func shapeDoc(b *strings.Builder, d bsoncore.Document, top, expr bool) {
	elems, err := d.Elements()
	if err != nil {
		b.WriteString(`"?"`)
		return
	}
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(e.Key()))
		b.WriteString(": ")
		// The command's own value names its collection.
		keep := mongoNames[e.Key()] || (top && i == 0)
		inExpr := expr
		switch k := e.Key(); {
		case k == "$expr":
			inExpr = true
		case mongoStages[k]:
			inExpr = k != "$match"
		case k == "filter" || k == "query" || k == "q":
			inExpr = false
		}
		if v, ok := e.Value().DocumentOK(); ok && top && i == 0 && e.Key() == "explain" {
			// The explained command keeps its collection as if run.
			shapeDoc(b, v, true, inExpr)
			continue
		}
		shapeValue(b, e.Value(), keep, inExpr)
	}
	b.WriteByte('}')
}

func shapeValue(b *strings.Builder, v bsoncore.Value, keep, expr bool) {
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument:
		shapeDoc(b, v.Document(), false, expr)
	case bsoncore.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			b.WriteString(`"?"`)
			return
		}
		b.WriteByte('[')
		literals := true
		for _, x := range vals {
			if x.Type == bsoncore.TypeEmbeddedDocument || x.Type == bsoncore.TypeArray {
				literals = false
			}
		}
		if literals && !keep && !expr && len(vals) > 0 {
			b.WriteString(`"?"]`)
			return
		}
		for i, x := range vals {
			if i > 0 {
				b.WriteString(", ")
			}
			shapeValue(b, x, keep, expr)
		}
		b.WriteByte(']')
	case bsoncore.TypeString:
		s := v.StringValue()
		// "$field" references in expressions are names, not values.
		if keep || (expr && fieldRef(s)) {
			b.WriteString(strconv.Quote(s))
			return
		}
		b.WriteString(`"?"`)
	default:
		b.WriteString(`"?"`)
	}
}

// fieldRef reports an expression's "$path" field reference.
func fieldRef(s string) bool {
	if len(s) < 2 || s[0] != '$' {
		return false
	}
	for i, r := range s[1:] {
		ok := r == '_' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}
