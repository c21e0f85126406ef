package postgres

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/sluicedb/sluice/extproc/session"
)

// Authentication request codes (AuthenticationXXX messages, type 'R').
const (
	authOk           = 0
	authCleartext    = 3
	authMD5          = 5
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// brokeredLogin performs the database authentication for the agent: the
// server's challenges stop at sluice, which answers them with the target's
// credentials, and the client sees only AuthenticationOk.
type brokeredLogin struct {
	login *session.Login
	conv  *scram.ClientConversation
	// proved: the server showed in SASLFinal that it knows the password.
	proved bool
}

// startupWithLogin rewrites a StartupMessage to log in as the brokered user;
// the database the client asked for is kept (or made explicit).
func startupWithLogin(sm *pgproto3.StartupMessage, l *session.Login, dst []byte) ([]byte, error) {
	params := make(map[string]string, len(sm.Parameters))
	for k, v := range sm.Parameters {
		params[k] = v
	}
	if params["database"] == "" {
		// PostgreSQL would default to the user's name: keep the client's.
		params["database"] = sm.Parameters["user"]
	}
	params["user"] = l.User
	m := pgproto3.StartupMessage{ProtocolVersion: sm.ProtocolVersion, Parameters: params}
	return m.Encode(dst)
}

// serverAuth answers one authentication request of the server. It returns
// whether the message goes on to the client (only AuthenticationOk does).
func (b *brokeredLogin) serverAuth(body []byte, out *session.Output) (forward bool, err error) {
	if len(body) < 4 {
		return false, &ProtocolError{Msg: "malformed authentication request from the server"}
	}
	code := binary.BigEndian.Uint32(body)
	data := body[4:]
	switch code {
	case authOk:
		if b.conv != nil && !b.proved {
			return false, &ProtocolError{Msg: "the database ended SCRAM authentication without proving it knows the password"}
		}
		return true, nil
	case authMD5:
		if len(data) != 4 {
			return false, &ProtocolError{Msg: "malformed MD5 authentication request"}
		}
		// md5(md5(password || user) || salt), hex, as PostgreSQL defines it.
		inner := md5.Sum([]byte(b.login.Password.Reveal() + b.login.User))
		outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), data...))
		m := pgproto3.PasswordMessage{Password: "md5" + hex.EncodeToString(outer[:])}
		return false, b.send(&m, out)
	case authSASL:
		mechs := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if !slices.Contains(mechs, "SCRAM-SHA-256") {
			return false, &ProtocolError{Msg: fmt.Sprintf("the database offers SASL mechanisms %v; sluice brokers SCRAM-SHA-256", mechs)}
		}
		client, err := scram.SHA256.NewClient("", b.login.Password.Reveal(), "")
		if err != nil {
			// Not a valid SASLprep string: PostgreSQL then uses the raw bytes too.
			client, err = scram.SHA256.NewClientUnprepped("", b.login.Password.Reveal(), "")
			if err != nil {
				return false, fmt.Errorf("cannot start SCRAM: %w", err)
			}
		}
		b.conv = client.NewConversation()
		first, err := b.conv.Step("")
		if err != nil {
			return false, fmt.Errorf("cannot start SCRAM: %w", err)
		}
		return false, b.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)}, out)
	case authSASLContinue:
		if b.conv == nil {
			return false, &ProtocolError{Msg: "SASL continuation before SASL started"}
		}
		resp, err := b.conv.Step(string(data))
		if err != nil {
			return false, &ProtocolError{Msg: fmt.Sprintf("SCRAM: %v", err)}
		}
		return false, b.send(&pgproto3.SASLResponse{Data: []byte(resp)}, out)
	case authSASLFinal:
		if b.conv == nil {
			return false, &ProtocolError{Msg: "SASL final message before SASL started"}
		}
		if _, err := b.conv.Step(string(data)); err != nil || !b.conv.Valid() {
			return false, &ProtocolError{Msg: "the database's SCRAM server signature is invalid"}
		}
		b.proved = true
		return false, nil
	case authCleartext:
		// The sluice-to-database leg is not encrypted: a cleartext password
		// would cross it readable.
		return false, &ProtocolError{Msg: "the database asks for a cleartext password; sluice logs in only with SCRAM-SHA-256 or MD5"}
	default:
		return false, &ProtocolError{Msg: fmt.Sprintf("the database asks for authentication method %d, which sluice cannot perform", code)}
	}
}

func (b *brokeredLogin) send(m interface{ Encode([]byte) ([]byte, error) }, out *session.Output) error {
	var err error
	if out.ToServer, err = m.Encode(out.ToServer); err != nil {
		return fmt.Errorf("cannot encode authentication response: %w", err)
	}
	out.Sensitive = true
	return nil
}
