// Package postgres is sluice's PostgreSQL v3 wire-protocol session: it sits
// in the middle of a tunnel, fed the client's and the server's bytes as Envoy
// streams them, and decides what each side receives. Messages are framed and
// decoded with pgx's pgproto3; rows and copy data stream through unbuffered.
//
// Message flow (https://www.postgresql.org/docs/current/protocol-flow.html):
//
//	client                         sluice                              server
//	(the connector answers SSLRequest / GSSENCRequest itself; a client
//	without it, or a request after the server spoke:)
//	SSLRequest / GSSENCRequest ──▶ before the server spoke: SSLRequest ─▶
//	'N' (per request) ◀────────── 'N' ◀────────────────────────────── 'N'
//	FATAL ◀───────────────────── 'S' (TLS sluice cannot read) ◀─────── 'S'
//	                              after the server spoke: 'N' itself
//	StartupMessage refused ─────▶ before the server spoke: SSLRequest ─▶
//	FATAL (the reason) ◀──────── in place of the server's answer ◀──── 'N'
//	   (Envoy drops bytes sent toward the client before the server's first
//	   byte, so sluice never speaks first: it makes the server speak)
//	StartupMessage ─────────────▶ checks parameters and database ──▶ StartupMessage
//	                              ◀── Authentication*, ParameterStatus, BackendKeyData
//	PasswordMessage / SASL* ────▶ only 'p' messages until ready ───▶ (passed through)
//	                              ◀────────────────────────────────── ReadyForQuery
//
//	with a brokered login (the target holds credentials for the agent's groups):
//	StartupMessage ─────────────▶ user := the login's user ────────▶ StartupMessage
//	                              ◀────────── AuthenticationSASL (SCRAM-SHA-256) / MD5Password
//	                              SASLInitialResponse ─────────────▶ (xdg-go/scram client)
//	                              ◀────────────────────────────────── AuthenticationSASLContinue
//	                              SASLResponse (client proof) ─────▶
//	                              ◀────────────────────────────────── AuthenticationSASLFinal
//	                              checks the server's signature
//	AuthenticationOk ◀─────────── ◀────────────────────────────────── AuthenticationOk, …, ReadyForQuery
//	(the client is never asked for a password; any it sends ends the session)
//	Query ──────────────────────▶ decide: allowed ─────────────────▶ Query
//	                              decide: refused ─▶ Describe(S, "sluice: refused …") + Sync
//	ErrorResponse 42501 + RFQ ◀── replaces the server's 26000 ◀────── ErrorResponse + RFQ
//	Parse ──────────────────────▶ unparseable: refused here; else ─▶ Parse
//	Bind ───────────────────────▶ decide: refused ─▶ Describe(S, "sluice: refused …")
//	Describe/Execute/Close/Sync ▶ (passed through; the server skips to Sync after an error)
//	CopyData/CopyDone/CopyFail ─▶ (passed through, streamed)
//	Query / Bind (approval) ────▶ held: nothing sent; later client messages wait
//	                              approved ─▶ the held message, then the waiting ones ─▶
//	ErrorResponse 42501 + RFQ ◀── denied / timed out: as a refusal, naming the request
//	FunctionCall ───────────────▶ always refused (calls any function by OID)
//	CancelRequest (own conn.) ──▶ forwarded as the connection's only message
//
// A refused statement never reaches the server. In its place sluice sends a
// Describe of a prepared statement that cannot exist, so the server itself
// fails at exactly that point: it aborts the transaction and skips the rest of
// the extended-protocol batch until Sync, as it would had the statement
// failed there, and the ReadyForQuery status stays the server's own. The
// session keeps a FIFO of client messages awaiting answers, so it knows which
// server message answers which, and swaps the placeholder's error for its own
// ErrorResponse (SQLSTATE 42501, naming the policies; 42601 for SQL it cannot
// parse).
//
// Policy is enforced at Bind (and Query), where execution starts — planning
// at Bind can already evaluate functions — matching where PostgreSQL reports
// permission errors; so a pipelined batch behaves as it would against a
// database that refused the statement itself.
package postgres
