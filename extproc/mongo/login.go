package mongo

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/xdg-go/scram"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// RoundTrip sends one command as an OP_MSG and returns the reply's command
// document.
type RoundTrip func(cmd bsoncore.Document) (bsoncore.Document, error)

// Login authenticates user with SCRAM-SHA-256 against database db (where
// the user is defined, usually "admin"): sluice logs in with the target's
// stored credentials, so the agent's driver needs none. It accepts the
// server's last reply with done true, or false and then one empty
// saslContinue (MongoDB without skipEmptyExchange; FerretDB differs).
func Login(rt RoundTrip, db, user, password string) error {
	l, cmd, err := newLogin(db, user, password, nil)
	for err == nil && cmd != nil {
		var reply bsoncore.Document
		if reply, err = rt(cmd); err == nil {
			cmd, err = l.next(reply)
		}
	}
	return err
}

// scramLogin is a SCRAM-SHA-256 conversation, one reply at a time, so the
// session can run it between the bytes it is fed.
type scramLogin struct {
	db, user string
	conv     *scram.ClientConversation
	round    int
}

// newLogin starts a conversation and returns its first command; nonce,
// when set, replaces the random client nonce (replaying a recorded login).
func newLogin(db, user, password string, nonce func() string) (*scramLogin, bsoncore.Document, error) {
	client, err := scramClient(user, password, nonce)
	if err != nil {
		return nil, nil, fmt.Errorf("scram: %w", err)
	}
	l := &scramLogin{db: db, user: user, conv: client.NewConversation()}
	first, err := l.conv.Step("")
	if err != nil {
		return nil, nil, fmt.Errorf("scram: %w", err)
	}
	return l, bsoncore.NewDocumentBuilder().
		AppendInt32("saslStart", 1).
		AppendString("mechanism", "SCRAM-SHA-256").
		AppendBinary("payload", 0, []byte(first)).
		AppendInt32("autoAuthorize", 1).
		AppendDocument("options", bsoncore.NewDocumentBuilder().AppendBoolean("skipEmptyExchange", true).Build()).
		AppendString("$db", db).Build(), nil
}

// next takes the server's reply and returns the next command, or nil when
// the login is done.
func (l *scramLogin) next(reply bsoncore.Document) (bsoncore.Document, error) {
	if err := commandError(reply); err != nil {
		return nil, fmt.Errorf("login as %s refused: %w", l.user, err)
	}
	if l.round++; l.round > 5 {
		return nil, errors.New("scram: the server did not finish the exchange")
	}
	done, _ := reply.Lookup("done").BooleanOK()
	if done && l.conv.Done() {
		if !l.conv.Valid() {
			return nil, errors.New("scram: the server's signature does not verify")
		}
		return nil, nil
	}
	_, payload, ok := reply.Lookup("payload").BinaryOK()
	if !ok {
		return nil, errors.New("scram: a reply without a payload")
	}
	var next string
	if !l.conv.Done() {
		var err error
		if next, err = l.conv.Step(string(payload)); err != nil {
			return nil, fmt.Errorf("scram: %w", err) // includes a server signature that does not verify
		}
	}
	if done {
		if !l.conv.Done() || !l.conv.Valid() {
			return nil, errors.New("scram: the server ended the exchange before proving itself")
		}
		return nil, nil
	}
	cid := reply.Lookup("conversationId")
	b := bsoncore.NewDocumentBuilder().AppendInt32("saslContinue", 1)
	if cid.Type != 0 {
		b.AppendValue("conversationId", cid)
	}
	return b.AppendBinary("payload", 0, []byte(next)).AppendString("$db", l.db).Build(), nil
}

// commandError is a reply's {ok: 0} as an error.
func commandError(reply bsoncore.Document) error {
	ok := reply.Lookup("ok")
	if n, isNum := ok.AsFloat64OK(); isNum && n == 1 {
		return nil
	}
	msg, _ := reply.Lookup("errmsg").StringValueOK()
	code, _ := reply.Lookup("code").AsInt64OK()
	return fmt.Errorf("%s (code %d)", msg, code)
}

// scramClients are SCRAM clients by login. A client keeps the keys it
// derived from the password per salt and iteration count, so PBKDF2 (15,000
// rounds on FerretDB) runs once per login, not once per connection.
var scramClients sync.Map // sha256(user, password, nonce) → *scram.Client

func scramClient(user, password string, nonce func() string) (*scram.Client, error) {
	fixed := ""
	if nonce != nil {
		fixed = nonce()
	}
	key := sha256.Sum256([]byte(user + "\x00" + password + "\x00" + fixed))
	if c, ok := scramClients.Load(key); ok {
		return c.(*scram.Client), nil
	}
	c, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		return nil, err
	}
	if fixed != "" {
		c = c.WithNonceGenerator(func() string { return fixed })
	}
	got, _ := scramClients.LoadOrStore(key, c)
	return got.(*scram.Client), nil
}
