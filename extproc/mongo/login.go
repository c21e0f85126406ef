package mongo

import (
	"errors"
	"fmt"

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
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	conv := client.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	reply, err := rt(bsoncore.NewDocumentBuilder().
		AppendInt32("saslStart", 1).
		AppendString("mechanism", "SCRAM-SHA-256").
		AppendBinary("payload", 0, []byte(first)).
		AppendInt32("autoAuthorize", 1).
		AppendDocument("options", bsoncore.NewDocumentBuilder().AppendBoolean("skipEmptyExchange", true).Build()).
		AppendString("$db", db).Build())
	for round := 0; ; round++ {
		if err != nil {
			return err
		}
		if err := commandError(reply); err != nil {
			return fmt.Errorf("login as %s refused: %w", user, err)
		}
		if round > 4 {
			return errors.New("scram: the server did not finish the exchange")
		}
		done, _ := reply.Lookup("done").BooleanOK()
		if done && conv.Done() {
			if !conv.Valid() {
				return errors.New("scram: the server's signature does not verify")
			}
			return nil
		}
		_, payload, ok := reply.Lookup("payload").BinaryOK()
		if !ok {
			return errors.New("scram: a reply without a payload")
		}
		var next string
		if !conv.Done() {
			if next, err = conv.Step(string(payload)); err != nil {
				return fmt.Errorf("scram: %w", err) // includes a server signature that does not verify
			}
		}
		if done {
			if !conv.Done() || !conv.Valid() {
				return errors.New("scram: the server ended the exchange before proving itself")
			}
			return nil
		}
		cid := reply.Lookup("conversationId")
		b := bsoncore.NewDocumentBuilder().AppendInt32("saslContinue", 1)
		if cid.Type != 0 {
			b.AppendValue("conversationId", cid)
		}
		reply, err = rt(b.AppendBinary("payload", 0, []byte(next)).AppendString("$db", db).Build())
	}
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
