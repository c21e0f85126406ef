package mongo

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func TestStripCompression(t *testing.T) {
	hello := bsoncore.NewDocumentBuilder().AppendInt32("hello", 1).
		AppendArray("compression", bsoncore.NewArrayBuilder().AppendString("zstd").AppendString("snappy").Build()).
		AppendString("$db", "admin").Build()
	out, changed := StripCompression(hello)
	if !changed || out.Lookup("compression").Type != 0 || out.Lookup("hello").Int32() != 1 || out.Lookup("$db").StringValue() != "admin" {
		t.Fatalf("stripped: %v (%v)", out, changed)
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, changed := StripCompression(out); changed {
		t.Fatal("nothing to strip, yet changed")
	}
}

// TestRewriteHelloHidesTheReplicaSet: a replica-set member's hello reply
// (synthetic: FerretDB is standalone) loses every field that names other
// servers, and keeps what the driver needs.
func TestRewriteHelloHidesTheReplicaSet(t *testing.T) {
	hosts := bsoncore.NewArrayBuilder().AppendString("db1.internal:27017").AppendString("db2.internal:27017").Build()
	reply := bsoncore.NewDocumentBuilder().
		AppendBoolean("isWritablePrimary", true).
		AppendArray("hosts", hosts).
		AppendArray("passives", bsoncore.NewArrayBuilder().AppendString("db3.internal:27017").Build()).
		AppendString("setName", "rs0").
		AppendInt32("setVersion", 3).
		AppendString("primary", "db1.internal:27017").
		AppendString("me", "db1.internal:27017").
		AppendString("compression", "zstd").
		AppendInt32("maxWireVersion", 21).
		AppendInt32("maxMessageSizeBytes", 48000000).
		AppendDouble("ok", 1).Build()
	out, changed := RewriteHello(reply)
	if !changed {
		t.Fatal("not changed")
	}
	for _, f := range []string{"hosts", "passives", "setName", "setVersion", "primary", "me", "compression"} {
		if out.Lookup(f).Type != 0 {
			t.Errorf("%s kept: %v", f, out)
		}
	}
	if !out.Lookup("isWritablePrimary").Boolean() || out.Lookup("maxWireVersion").Int32() != 21 || out.Lookup("ok").Double() != 1 {
		t.Fatalf("lost what the driver needs: %v", out)
	}
}
