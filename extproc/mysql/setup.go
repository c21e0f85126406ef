package mysql

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// After login, and after COM_RESET_CONNECTION (which returns every session
// variable to its global value), sluice sends its own commands before the
// client's next one, which waits in backlog:
//   - the guardrails' statement timeout, when one is set: MariaDB's
//     max_statement_time (seconds, every statement) or MySQL's
//     max_execution_time (milliseconds, SELECT);
//   - SELECT @@SESSION.sql_mode, @@SESSION.character_set_client: what the
//     server will read the client's SQL under, as it says (the handshake's
//     character set, ALTER-ed globals and server options all end up here).
// A refused timeout, a mode sluice cannot parse under or a character set
// that is not ASCII-safe ends the session.

// setupStep is one answer sluice awaits for its own commands.
type setupStep int

const (
	stepTimeout setupStep = iota // OK or ERR to the SET
	stepLexical                  // the result set of the SELECT
)

// lexicalQuery reads the session's lexical settings.
const lexicalQuery = "SELECT @@SESSION.sql_mode, @@SESSION.character_set_client"

// setupReader follows the one-row result set of lexicalQuery.
type setupReader struct {
	state respState
	left  int
	row   []string
}

// startSetup sends sluice's own commands.
func (s *Session) startSetup(out *session.Output) {
	s.setup = s.setup[:0]
	if timeout := s.cfg.Target.Guardrails.StatementTimeout; timeout > 0 {
		set := fmt.Sprintf("SET SESSION max_execution_time = %d", max(1, timeout.Milliseconds()))
		if s.mariadb {
			set = fmt.Sprintf("SET SESSION max_statement_time = %s", strconv.FormatFloat(max(timeout, time.Millisecond).Seconds(), 'f', -1, 64))
		}
		out.ToServer, _ = appendPacket(out.ToServer, append([]byte{comQuery}, set...), 0)
		s.setup = append(s.setup, stepTimeout)
	}
	out.ToServer, _ = appendPacket(out.ToServer, append([]byte{comQuery}, lexicalQuery...), 0)
	s.setup = append(s.setup, stepLexical)
	s.setupRead = setupReader{}
}

// setupAnswer takes a packet of the server's answers to sluice's commands.
func (s *Session) setupAnswer(p phys, out *session.Output) error {
	if p.cont || p.more || len(p.payload) == 0 {
		return &ProtocolError{"unexpected answer to sluice's session setup"}
	}
	b := p.payload
	switch s.setup[0] {
	case stepTimeout:
		if b[0] == 0xFF {
			s.log.Error("the database refused the statement timeout; session ended", "answer", string(b[min(len(b), 9):]))
			s.Expire("the database refused the guardrails' statement timeout", out)
			return nil
		}
		s.setup = s.setup[1:]
		return nil
	}
	r := &s.setupRead
	switch {
	case b[0] == 0xFF:
		return &ProtocolError{"the database refused to report its sql_mode and character set: " + string(b[min(len(b), 9):])}
	case r.state == stStart:
		n, _, _, ok := lenenc(b)
		if !ok || n != 2 {
			return &ProtocolError{"unexpected answer to sluice's session setup"}
		}
		r.state, r.left = stColumns, 2
	case r.state == stColumns:
		if r.left--; r.left == 0 {
			r.state = stRows
			if !s.deprecateEOF || s.caps&capDeprecateEOF == 0 {
				r.state = stColEOF
			}
		}
	case r.state == stColEOF:
		r.state = stRows
	case s.eofLike(b):
		return s.lexicalSettings(r.row, out)
	default:
		var vals []string
		for rest := b; len(vals) < 2; {
			n, k, null, ok := lenenc(rest)
			if !ok || null || uint64(len(rest)-k) < n {
				return &ProtocolError{"malformed answer to sluice's session setup"}
			}
			vals = append(vals, string(rest[k:k+int(n)]))
			rest = rest[k+int(n):]
		}
		r.row = vals
	}
	return nil
}

// lexicalSettings adopts the server's sql_mode and character set, then lets
// the client's commands through.
func (s *Session) lexicalSettings(row []string, out *session.Output) error {
	if len(row) != 2 {
		return &ProtocolError{"the database did not report its sql_mode and character set"}
	}
	mode, err := policy.ParseSQLMode(row[0])
	if err != nil {
		return &ProtocolError{fmt.Sprintf("the session's sql_mode is one sluice cannot read SQL under: %v", err)}
	}
	if !policy.SafeMySQLCharset(row[1]) {
		return &ProtocolError{fmt.Sprintf("the session's character set %q is not ASCII-safe, so sluice could not read SQL as the server does", row[1])}
	}
	s.cfg.Authorizer.SetSQLMode(mode)
	s.log.Debug("session settings", "sql_mode", mode.Text, "character_set_client", strings.ToLower(row[1]))
	s.setup = nil
	return s.replayBacklog(out)
}
