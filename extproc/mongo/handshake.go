package mongo

import (
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// StripCompression returns the client's hello without its "compression"
// list, so the server never agrees to OP_COMPRESSED: sluice must read
// every message, and it refuses a compressed one.
func StripCompression(hello bsoncore.Document) (bsoncore.Document, bool) {
	return without(hello, "compression")
}

// topologyFields are the hello reply fields that name servers a driver
// would connect to directly, around the tunnel.
var topologyFields = []string{"hosts", "passives", "arbiters", "me", "primary", "setName", "setVersion", "electionId", "topologyVersion"}

// RewriteHello makes a server's hello reply describe a standalone server:
// a replica set's member list (hosts, me, primary, …) would make a driver
// connect to those addresses around the tunnel, so it is removed; with no
// setName the driver keeps to the one address it was given. It also drops
// a "compression" the server chose, which the client never offered.
func RewriteHello(reply bsoncore.Document) (bsoncore.Document, bool) {
	changed := false
	for _, f := range append(topologyFields, "compression") {
		var c bool
		reply, c = without(reply, f)
		changed = changed || c
	}
	return reply, changed
}

// without returns d without its top-level field key (and whether it had it).
func without(d bsoncore.Document, key string) (bsoncore.Document, bool) {
	if d.Lookup(key).Type == 0 {
		return d, false
	}
	elems, err := d.Elements()
	if err != nil {
		return d, false
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		if e.Key() != key {
			out = append(out, e...)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out, true
}
