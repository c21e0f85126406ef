// Package mongo is the MongoDB wire protocol as sluice carries it between
// an agent's driver and the database (FerretDB or MongoDB): frames cut from
// a byte stream at any split, OP_MSG with both section kinds and the
// checksum, the legacy OP_QUERY handshake and its OP_REPLY; the handshake
// rewrites (no compression offered, no replica-set members named to the
// driver); sluice's own SCRAM-SHA-256 login with the target's credentials;
// and the Session, which decides each command before it reaches the
// server, answers a refused one in its place, holds one for approval,
// masks the documents of every reply by the command's plan, and applies
// the guardrails.
//
// Message flow (MongoDB 3.6+ drivers), with a brokered login:
//
//	client                 sluice                         server
//	hello ──────────────▶  (held)   saslStart (own id) ──▶
//	                                ◀── {conversationId, payload}
//	                                saslContinue ──▶ … ◀── {done: true}
//	                       hello (compression stripped) ──▶
//	     ◀── hello reply (topology rewritten) ◀──
//
//	client                         server
//	OP_QUERY {isMaster|hello} ──▶            legacy handshake (or OP_MSG hello)
//	          ◀── OP_REPLY {ismaster, maxWireVersion, maxMessageSizeBytes, …}
//	OP_MSG {saslStart …}      ──▶            SCRAM, as many round trips as needed
//	          ◀── OP_MSG {conversationId, done, payload}
//	OP_MSG {find: "users", $db} ──▶
//	          ◀── OP_MSG {cursor: {id, ns, firstBatch}, ok: 1}
//	OP_MSG {getMore: id, collection} ──▶
//	          ◀── OP_MSG {cursor: {id, nextBatch}, ok: 1}
//	OP_MSG {insert: "users"} + kind-1 "documents" ──▶
//	          ◀── OP_MSG {n, ok: 1}
//
// Every reply names the request it answers in responseTo. An OP_MSG with
// moreToCome from the client expects no reply (an unacknowledged write);
// from the server it means more replies follow without a request (exhaust
// cursors, only when the client set exhaustAllowed). OP_COMPRESSED is only
// used once both sides negotiated compression in the handshake.
//
// A cursor belongs to the server, not to the connection: a driver sends
// its getMore on any pooled connection. sluice keeps the cursors of one
// serve process in Cursors, by agent, so the agent's other connections
// continue them with the originating command's plan.
package mongo
