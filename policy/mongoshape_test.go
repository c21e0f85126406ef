package policy

import (
	"strings"
	"testing"
)

func TestMongoShapeHidesValues(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{`{"find": "users", "filter": {"email": "alice@example.com", "age": {"$gt": 30}}, "limit": 5, "$db": "app"}`,
			`{"find": "users", "filter": {"email": "?", "age": {"$gt": "?"}}, "limit": "?", "$db": "app"}`},
		{`{"delete": "users", "deletes": [{"q": {"ssn": "123-45-6789"}, "limit": 0}]}`,
			`{"delete": "users", "deletes": [{"q": {"ssn": "?"}, "limit": "?"}]}`},
		{`{"aggregate": "users", "pipeline": [{"$match": {"city": {"$in": ["Oslo", "Rome"]}}}, {"$project": {"x": "$ssn"}}, {"$lookup": {"from": "orders", "localField": "_id", "foreignField": "uid", "as": "o"}}], "cursor": {}}`,
			`{"aggregate": "users", "pipeline": [{"$match": {"city": {"$in": ["?"]}}}, {"$project": {"x": "$ssn"}}, {"$lookup": {"from": "orders", "localField": "_id", "foreignField": "uid", "as": "o"}}], "cursor": {}}`},
		{`{"find": "users", "filter": {"password": "$2b$10$abcdef", "token": "$ecret"}}`,
			`{"find": "users", "filter": {"password": "?", "token": "?"}}`},
		{`{"find": "users", "filter": {"$expr": {"$eq": ["$a", "$b"]}}}`,
			`{"find": "users", "filter": {"$expr": {"$eq": ["$a", "$b"]}}}`},
		{`{"find": "users", "filter": {"$where": "this.secret == 'x y'"}}`,
			`{"find": "users", "filter": {"$where": "?"}}`},
		// An explained command keeps its collection, as if run.
		{`{"explain": {"find": "payroll", "filter": {"ssn": "123-45-6789"}}, "verbosity": "executionStats"}`,
			`{"explain": {"find": "payroll", "filter": {"ssn": "?"}}, "verbosity": "?"}`},
	} {
		cmd, err := MongoCommand(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		got := MongoShape(cmd)
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.cmd, got, tc.want)
		}
		for _, secret := range []string{"alice", "123-45", "Oslo", "secret", "$2b", "$ecret"} {
			if strings.Contains(got, secret) {
				t.Errorf("%q leaked into %s", secret, got)
			}
		}
	}
}
