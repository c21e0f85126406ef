// Package session holds what the ext_proc server and the wire-protocol
// sessions share: who is connecting, to what, and what a session answers.
// It has no behaviour, so both sides can import it without a cycle.
package session

import "time"

// Identity is the authenticated agent behind a tunnel, taken from the JWT
// claims that Envoy's jwt_authn filter validated.
type Identity struct {
	Subject string         // the JWT sub claim
	Groups  []string       // from the configured groups claim
	Claims  map[string]any // every claim, for policies and audit
	// Expiry is the token's exp: the session may not outlive it.
	Expiry time.Time
}

// Target is a configured database a tunnel may reach.
type Target struct {
	Name     string
	Protocol string // "postgres" or "mysql"
	Database string // when set, the only database a client may open
	Tags     map[string]string
}

// Output collects what a session sends after consuming one chunk.
type Output struct {
	ToServer []byte
	ToClient []byte
}

// Reset empties the output, keeping its buffers.
func (o *Output) Reset() {
	o.ToServer = o.ToServer[:0]
	o.ToClient = o.ToClient[:0]
}

// Expirer is a session that can end itself when the agent's token expires:
// it writes a protocol error for the client and a hang-up for the server.
type Expirer interface {
	Expire(reason string, out *Output)
}

// Session is one database connection's wire-protocol state machine. It is fed
// the tunnel's bytes in order, chunk by chunk, and is not safe for concurrent use.
type Session interface {
	// FromClient consumes bytes the client sent toward the database.
	FromClient(data []byte, out *Output) error
	// FromServer consumes bytes the database sent toward the client.
	FromServer(data []byte, out *Output) error
}
