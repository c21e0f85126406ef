package mongo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

const (
	headerLen = 16
	// DefaultMaxMessageSize is MongoDB's maxMessageSizeBytes; a server's
	// hello reply may name another.
	DefaultMaxMessageSize = 48_000_000
)

// ProtocolError is a byte stream that is not the MongoDB wire protocol as
// sluice accepts it: the session ends rather than pass it.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "mongodb protocol: " + e.Msg }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// Message is one whole wire message.
type Message struct {
	RequestID, ResponseTo int32
	OpCode                wiremessage.OpCode
	Raw                   []byte // the whole message, header included
}

// Body is the message after its header.
func (m Message) Body() []byte { return m.Raw[headerLen:] }

// Framer cuts whole messages out of a byte stream that arrives in chunks
// split anywhere.
type Framer struct {
	// Max is the largest message accepted (0: DefaultMaxMessageSize).
	Max  int
	buf  []byte
	sent int // bytes of buf already handed out (compacted on the next Feed)
}

// Feed adds data and calls fn for each message it completes, in order. A
// message fn is given is valid until the next Feed.
func (f *Framer) Feed(data []byte, fn func(Message) error) error {
	if f.sent > 0 {
		f.buf = append(f.buf[:0], f.buf[f.sent:]...)
		f.sent = 0
	}
	f.buf = append(f.buf, data...)
	max := f.Max
	if max <= 0 {
		max = DefaultMaxMessageSize
	}
	for {
		rest := f.buf[f.sent:]
		if len(rest) < 4 {
			return nil
		}
		n := int(int32(binary.LittleEndian.Uint32(rest)))
		if n < headerLen || n > max {
			return protoErr("message length %d outside [%d, %d]", n, headerLen, max)
		}
		if len(rest) < n {
			return nil
		}
		_, reqID, respTo, op, _, _ := wiremessage.ReadHeader(rest[:n])
		f.sent += n
		if err := fn(Message{RequestID: reqID, ResponseTo: respTo, OpCode: op, Raw: rest[:n:n]}); err != nil {
			return err
		}
	}
}

// Pending is how many bytes of an incomplete message the framer holds.
func (f *Framer) Pending() int { return len(f.buf) - f.sent }

// Sequence is an OP_MSG kind-1 section: documents under one identifier
// ("documents", "updates", "deletes", "ops", "nsInfo").
type Sequence struct {
	Identifier string
	Docs       []bsoncore.Document
}

// Msg is a parsed OP_MSG.
type Msg struct {
	Flags     wiremessage.MsgFlag
	Body      bsoncore.Document // the kind-0 section: the command
	Sequences []Sequence
}

// knownFlags are the OP_MSG flag bits sluice understands. Bits 0-15 are
// "required": a receiver must refuse a message with one it does not know.
const knownFlags = wiremessage.ChecksumPresent | wiremessage.MoreToCome | wiremessage.ExhaustAllowed

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ParseMsg parses an OP_MSG: one kind-0 section, any number of kind-1
// sections, and the CRC-32C checksum when its flag is set (verified).
// Every document is validated.
func ParseMsg(m Message) (Msg, error) {
	if m.OpCode != wiremessage.OpMsg {
		return Msg{}, protoErr("%v is not OP_MSG", m.OpCode)
	}
	flags, rem, ok := wiremessage.ReadMsgFlags(m.Body())
	if !ok {
		return Msg{}, protoErr("OP_MSG without flags")
	}
	if unknown := flags &^ knownFlags; unknown&0xffff != 0 {
		return Msg{}, protoErr("OP_MSG with unknown required flags %#x", uint32(unknown))
	}
	if flags&wiremessage.ChecksumPresent != 0 {
		if len(rem) < 4 {
			return Msg{}, protoErr("OP_MSG checksum missing")
		}
		want := binary.LittleEndian.Uint32(rem[len(rem)-4:])
		if got := crc32.Checksum(m.Raw[:len(m.Raw)-4], castagnoli); got != want {
			return Msg{}, protoErr("OP_MSG checksum %#x, computed %#x", want, got)
		}
		rem = rem[:len(rem)-4]
	}
	var msg Msg
	msg.Flags = flags
	for len(rem) > 0 {
		kind, r, _ := wiremessage.ReadMsgSectionType(rem)
		switch kind {
		case wiremessage.SingleDocument:
			if msg.Body != nil {
				return Msg{}, protoErr("OP_MSG with two command documents")
			}
			doc, r2, ok := bsoncore.ReadDocument(r)
			if !ok {
				return Msg{}, protoErr("OP_MSG command document cut short")
			}
			if err := doc.Validate(); err != nil {
				return Msg{}, protoErr("OP_MSG command document: %v", err)
			}
			msg.Body, rem = doc, r2
		case wiremessage.DocumentSequence:
			id, data, r2, ok := wiremessage.ReadMsgSectionRawDocumentSequence(r)
			if !ok {
				return Msg{}, protoErr("OP_MSG document sequence cut short")
			}
			seq := Sequence{Identifier: id}
			for len(data) > 0 {
				doc, d2, ok := bsoncore.ReadDocument(data)
				if !ok {
					return Msg{}, protoErr("OP_MSG sequence %q: a document cut short", id)
				}
				if err := doc.Validate(); err != nil {
					return Msg{}, protoErr("OP_MSG sequence %q: %v", id, err)
				}
				seq.Docs, data = append(seq.Docs, doc), d2
			}
			msg.Sequences, rem = append(msg.Sequences, seq), r2
		default:
			return Msg{}, protoErr("OP_MSG section kind %d", kind)
		}
	}
	if msg.Body == nil {
		return Msg{}, protoErr("OP_MSG without a command document")
	}
	return msg, nil
}

// Command is the command's name: the body's first key ("find", "insert").
func (m Msg) Command() string {
	e, err := m.Body.IndexErr(0)
	if err != nil {
		return ""
	}
	return e.Key()
}

// AppendMsg appends msg as an OP_MSG. The checksum, when its flag is set,
// is computed afresh (a rewritten message must not carry the old one).
func AppendMsg(dst []byte, requestID, responseTo int32, msg Msg) []byte {
	start := len(dst)
	idx, dst := wiremessage.AppendHeaderStart(dst, requestID, responseTo, wiremessage.OpMsg)
	dst = wiremessage.AppendMsgFlags(dst, msg.Flags)
	dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	dst = append(dst, msg.Body...)
	for _, s := range msg.Sequences {
		dst = wiremessage.AppendMsgSectionType(dst, wiremessage.DocumentSequence)
		var sidx int32
		sidx, dst = bsoncore.ReserveLength(dst)
		dst = append(dst, s.Identifier...)
		dst = append(dst, 0)
		for _, d := range s.Docs {
			dst = append(dst, d...)
		}
		dst = bsoncore.UpdateLength(dst, sidx, int32(len(dst[sidx:])))
	}
	if msg.Flags&wiremessage.ChecksumPresent != 0 {
		dst = append(dst, 0, 0, 0, 0) // counted in the length, then filled
		dst = bsoncore.UpdateLength(dst, idx, int32(len(dst[start:])))
		sum := crc32.Checksum(dst[start:len(dst)-4], castagnoli)
		binary.LittleEndian.PutUint32(dst[len(dst)-4:], sum)
		return dst
	}
	return bsoncore.UpdateLength(dst, idx, int32(len(dst[start:])))
}

// Query is a legacy OP_QUERY; drivers still open with one ({isMaster: 1}
// on "admin.$cmd") when they do not yet know the server speaks OP_MSG.
type Query struct {
	Flags      wiremessage.QueryFlag
	Collection string // full name: "admin.$cmd"
	Skip, N    int32
	Query      bsoncore.Document
	Selector   bsoncore.Document // nil if absent
}

// ParseQuery parses an OP_QUERY.
func ParseQuery(m Message) (Query, error) {
	if m.OpCode != wiremessage.OpQuery {
		return Query{}, protoErr("%v is not OP_QUERY", m.OpCode)
	}
	var q Query
	var ok bool
	rem := m.Body()
	if q.Flags, rem, ok = wiremessage.ReadQueryFlags(rem); !ok {
		return Query{}, protoErr("OP_QUERY without flags")
	}
	if q.Collection, rem, ok = wiremessage.ReadQueryFullCollectionName(rem); !ok {
		return Query{}, protoErr("OP_QUERY without a collection name")
	}
	if q.Skip, rem, ok = wiremessage.ReadQueryNumberToSkip(rem); !ok {
		return Query{}, protoErr("OP_QUERY without numberToSkip")
	}
	if q.N, rem, ok = wiremessage.ReadQueryNumberToReturn(rem); !ok {
		return Query{}, protoErr("OP_QUERY without numberToReturn")
	}
	if q.Query, rem, ok = bsoncore.ReadDocument(rem); !ok {
		return Query{}, protoErr("OP_QUERY query document cut short")
	}
	if err := q.Query.Validate(); err != nil {
		return Query{}, protoErr("OP_QUERY query document: %v", err)
	}
	if len(rem) > 0 {
		if q.Selector, rem, ok = bsoncore.ReadDocument(rem); !ok || len(rem) > 0 {
			return Query{}, protoErr("OP_QUERY field selector malformed")
		}
		if err := q.Selector.Validate(); err != nil {
			return Query{}, protoErr("OP_QUERY field selector: %v", err)
		}
	}
	return q, nil
}

// ParseReply parses an OP_REPLY and returns its documents.
func ParseReply(m Message) (wiremessage.ReplyFlag, []bsoncore.Document, error) {
	if m.OpCode != wiremessage.OpReply {
		return 0, nil, protoErr("%v is not OP_REPLY", m.OpCode)
	}
	rem := m.Body()
	flags, rem, ok := wiremessage.ReadReplyFlags(rem)
	if ok {
		_, rem, ok = wiremessage.ReadReplyCursorID(rem)
	}
	if ok {
		_, rem, ok = wiremessage.ReadReplyStartingFrom(rem)
	}
	var n int32
	if ok {
		n, rem, ok = wiremessage.ReadReplyNumberReturned(rem)
	}
	if !ok {
		return 0, nil, protoErr("OP_REPLY header cut short")
	}
	var docs []bsoncore.Document
	for len(rem) > 0 {
		doc, r, ok := bsoncore.ReadDocument(rem)
		if !ok {
			return 0, nil, protoErr("OP_REPLY document cut short")
		}
		if err := doc.Validate(); err != nil {
			return 0, nil, protoErr("OP_REPLY document: %v", err)
		}
		docs, rem = append(docs, doc), r
	}
	if int(n) != len(docs) {
		return 0, nil, protoErr("OP_REPLY says %d documents, holds %d", n, len(docs))
	}
	return flags, docs, nil
}

// AppendReply appends an OP_REPLY holding doc: the answer to a legacy
// OP_QUERY command.
func AppendReply(dst []byte, requestID, responseTo int32, doc bsoncore.Document) []byte {
	return appendReplyFlags(dst, requestID, responseTo, 0, doc)
}

// Unauthorized is MongoDB's error code for a command the user may not run.
const Unauthorized = 13

// CursorNotFound is MongoDB's answer to a getMore on a cursor it does not
// have; sluice gives it for a cursor the agent did not open.
const CursorNotFound = 43

// OperationFailed is MongoDB's generic failure code: sluice ends a result
// the guardrails cut with it.
const OperationFailed = 96

// ErrorDoc is a command failure as MongoDB reports it: {ok: 0, errmsg,
// code, codeName}. Drivers raise it as their OperationFailure.
func ErrorDoc(code int32, codeName, errmsg string) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().
		AppendDouble("ok", 0).
		AppendString("errmsg", errmsg).
		AppendInt32("code", code).
		AppendString("codeName", codeName).
		Build()
}

// Refusal is the reply sluice sends in a refused request's place: an OP_MSG
// (or, to a legacy OP_QUERY, an OP_REPLY) answering request, with code 13
// Unauthorized, so the driver raises it and the connection stays usable.
func Refusal(dst []byte, requestID int32, request Message, errmsg string) ([]byte, error) {
	doc := ErrorDoc(Unauthorized, "Unauthorized", errmsg)
	switch request.OpCode {
	case wiremessage.OpMsg:
		return AppendMsg(dst, requestID, request.RequestID, Msg{Body: doc}), nil
	case wiremessage.OpQuery:
		return AppendReply(dst, requestID, request.RequestID, doc), nil
	}
	return dst, errors.New("no reply form for " + request.OpCode.String())
}
