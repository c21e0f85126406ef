package postgres

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

func (s *Session) startupFrame(f frame, out *session.Output) error {
	code := binary.BigEndian.Uint32(f.body)
	switch code {
	case codeSSLRequest, codeGSSENCRequest:
		// TLS or GSS encryption must never start inside the tunnel, where
		// sluice would be blind: the client is told 'N' and goes on in
		// plaintext. Before the server has spoken, that answer can only
		// replace the server's own: it gets an SSLRequest (never a
		// GSSENCRequest, which a GSSAPI build answers 'G' whatever its
		// configuration), and a server that answers 'S' ends the session.
		if !s.spoke {
			if s.negotiating == 0 {
				out.ToServer = appendSSLRequest(out.ToServer)
			}
			s.negotiating++
			return nil
		}
		out.ToClient = append(out.ToClient, 'N')
		return nil
	case codeCancelRequest:
		if len(f.body) != 12 {
			return &ProtocolError{Msg: "malformed cancel request"}
		}
		s.log.Info("cancel request forwarded", "pid", binary.BigEndian.Uint32(f.body[4:]))
		out.ToServer = append(out.ToServer, f.raw...)
		s.phase = phaseCancel
		return nil
	}
	var sm pgproto3.StartupMessage
	if err := sm.Decode(f.body); err != nil {
		return &ProtocolError{Msg: fmt.Sprintf("cannot decode startup message: %v", err)}
	}
	if err := s.checkStartup(sm.Parameters); err != nil {
		return err
	}
	s.client.startup = false
	// Settings given at startup are what RESET, RESET ALL and DISCARD ALL
	// return to, ahead of ALTER ROLE / DATABASE defaults: sluice pins the
	// one that changes how strings are read here (see policy.checkLexical),
	// and the guardrails' statement timeout.
	pinned := []string{"standard_conforming_strings", "on"}
	if timeout := s.cfg.Target.Guardrails.StatementTimeout; timeout > 0 {
		pinned = append(pinned, "statement_timeout", fmt.Sprintf("%dms", max(1, timeout.Milliseconds())))
	}
	for i := 0; i < len(pinned); i += 2 {
		sm.Parameters[pinned[i]] = pinned[i+1]
	}
	if l := s.cfg.Target.Login; l != nil {
		var err error
		if out.ToServer, err = startupWithLogin(&sm, l, out.ToServer); err != nil {
			return &ProtocolError{Msg: fmt.Sprintf("cannot rewrite startup message: %v", err)}
		}
		s.login = &brokeredLogin{login: l}
		s.log = s.log.With("db_user", l.User, "client_user", sm.Parameters["user"], "database", sm.Parameters["database"])
		s.phase = phaseAuth
		return nil
	}
	s.log = s.log.With("db_user", sm.Parameters["user"], "database", sm.Parameters["database"])
	out.ToServer = appendStartupParams(out.ToServer, f.raw, pinned...)
	s.phase = phaseAuth
	return nil
}

// appendStartupParams appends the startup message raw with name/value
// pairs added after the client's own, in order.
func appendStartupParams(dst, raw []byte, kv ...string) []byte {
	start := len(dst)
	dst = append(dst, raw[:len(raw)-1]...) // all but the list's final NUL
	for _, s := range kv {
		dst = append(append(dst, s...), 0)
	}
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// allowedStartupParams are the startup parameters a client may set. Others
// (options, replication, role, search_path, …) would change the session's
// authority or name resolution before sluice sees a statement.
var allowedStartupParams = map[string]bool{
	"user": true, "database": true, "application_name": true, "client_encoding": true,
	"datestyle": true, "timezone": true, "extra_float_digits": true, "intervalstyle": true,
	// How the session reports and waits, never what it may read.
	"client_min_messages": true, "lock_timeout": true, "idle_in_transaction_session_timeout": true,
	"idle_session_timeout": true, "default_transaction_isolation": true, "default_transaction_read_only": true,
	"bytea_output": true,
}

func (s *Session) checkStartup(params map[string]string) error {
	for k, v := range params {
		if !allowedStartupParams[strings.ToLower(k)] {
			return &ProtocolError{Code: "42501", Msg: fmt.Sprintf("startup parameter %q is not allowed through the gateway", k)}
		}
		if strings.EqualFold(k, "client_encoding") && !policy.SafePGEncoding(v) {
			return &ProtocolError{Code: "42501", Msg: fmt.Sprintf("client_encoding %q is not allowed through the gateway: a backslash or quote byte can end a character in it, so sluice could not read SQL as the server does", v)}
		}
	}
	db := params["database"]
	if db == "" {
		db = params["user"]
	}
	if want := s.cfg.Target.Database; want != "" && db != want {
		return &ProtocolError{Code: "28000", Msg: fmt.Sprintf("target %q serves database %q, not %q", s.cfg.Target.Name, want, db)}
	}
	return nil
}

// parameterStatus checks what the server reports of the settings that
// change how it reads SQL: it is the server's own word, covering ways to
// change them that no statement shows (ALTER ROLE … SET, a reload). A value
// sluice cannot parse under ends the session.
func (s *Session) parameterStatus(body []byte) error {
	var m pgproto3.ParameterStatus
	if err := m.Decode(body); err != nil {
		return &ProtocolError{Msg: "malformed ParameterStatus from the server"}
	}
	switch strings.ToLower(m.Name) {
	case "standard_conforming_strings":
		if m.Value != "on" {
			return &ProtocolError{Msg: "the server reports standard_conforming_strings " + m.Value + ": sluice reads SQL only with it on, so the session ends"}
		}
	case "client_encoding":
		if !policy.SafePGEncoding(m.Value) {
			return &ProtocolError{Msg: "the server reports client_encoding " + m.Value + ", which sluice cannot read SQL in, so the session ends"}
		}
		enc := strings.ToUpper(m.Value)
		s.utf8 = enc == "UTF8" || enc == "UTF-8" || enc == "UNICODE"
	}
	return nil
}
