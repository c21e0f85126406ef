package connector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// sniffWait is how long a client with an unknown protocol is given to
// speak first: a PostgreSQL client sends its startup at once, a MySQL
// client waits for the server's greeting.
const sniffWait = 300 * time.Millisecond

// refuse tells the client why its connection failed, in its own protocol,
// so psql, mysql and drivers print the cause instead of a bare EOF.
func (c *Connector) refuse(conn net.Conn, protocol string, cause error) {
	r := bufio.NewReader(conn)
	if protocol == "" {
		_ = conn.SetReadDeadline(time.Now().Add(sniffWait))
		switch head, _ := r.Peek(16); {
		case isMongoHeader(head):
			protocol = "mongodb"
		case len(head) > 0:
			protocol = "postgres"
		default:
			protocol = "mysql"
		}
		_ = conn.SetReadDeadline(time.Time{})
	}
	reason := explain(cause)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	switch protocol {
	case "postgres":
		c.refusePostgres(conn, r, reason)
	case "mysql":
		refuseMySQL(conn, reason)
	case "mongodb":
		refuseMongo(conn, r, reason)
	}
}

// refusal is why a tunnel failed, with the codes each protocol shows.
type refusal struct {
	msg      string
	sqlstate string
	myErr    uint16 // MySQL error number
}

// explain turns a failed tunnel into what the client is told.
func explain(err error) refusal {
	var re *RefusedError
	if !errors.As(err, &re) {
		return refusal{"sluice connect: " + err.Error(), "08006", 1105}
	}
	body := strings.TrimPrefix(re.Body, "sluice: ")
	switch {
	case re.Status == http.StatusUnauthorized:
		return refusal{"sluice connect: the gateway did not accept the agent's token: " + orStatus(body, re.Status), "28000", 1045}
	case re.Status == http.StatusForbidden:
		return refusal{"sluice connect: the gateway refused the connection: " + orStatus(body, re.Status), "28000", 1045}
	case re.Status == http.StatusNotFound:
		return refusal{"sluice connect: " + orStatus(body, re.Status), "3D000", 1049}
	case strings.HasPrefix(re.Body, "sluice: "):
		// The gateway's own words (Envoy's reply when sluice serve is
		// unreachable, or a refusal by sluice serve).
		return refusal{"sluice connect: " + body, "08006", 1105}
	case body == "" && (re.Status == http.StatusInternalServerError || re.Status == http.StatusBadGateway):
		// ext_proc's failure status without the mapper's reason (an Envoy
		// configured by hand).
		return refusal{"sluice connect: the gateway cannot reach its policy service (sluice serve), so it refuses every connection: " + orStatus(body, re.Status), "08006", 1105}
	case re.Status == http.StatusServiceUnavailable || re.Status == http.StatusGatewayTimeout:
		return refusal{"sluice connect: the gateway cannot reach the database: " + orStatus(body, re.Status), "08006", 1105}
	}
	return refusal{"sluice connect: " + re.Error(), "08006", 1105}
}

func orStatus(body string, status int) string {
	if body != "" {
		return body
	}
	return fmt.Sprintf("%d %s", status, http.StatusText(status))
}

// refusePostgres answers the client's SSL/GSS requests as a tunnel would,
// reads its startup message (closing with unread bytes could reset the
// connection before the error is read) and sends a FATAL error.
func (c *Connector) refusePostgres(conn net.Conn, r *bufio.Reader, why refusal) {
	conn, first, err := c.negotiate(&bufferedConn{Conn: conn, r: r})
	if err != nil || len(first) < 8 {
		return
	}
	if n := int(binary.BigEndian.Uint32(first)); n > 8 && n <= 10000 {
		if _, err := io.CopyN(io.Discard, conn, int64(n-8)); err != nil {
			return
		}
	}
	if binary.BigEndian.Uint32(first[4:]) != pgproto3.ProtocolVersionNumber {
		return // a CancelRequest: no answer is expected
	}
	be := pgproto3.NewBackend(conn, conn)
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: why.sqlstate, Message: why.msg})
	_ = be.Flush()
}

// refuseMySQL sends an ERR packet in place of the server's greeting, which
// MySQL clients read and show (as they do the server's own "Host … is
// blocked"). No SQLSTATE: before the greeting no capabilities are agreed,
// and libmysqlclient would print a "#08006" marker as part of the message.
func refuseMySQL(conn net.Conn, why refusal) {
	p := []byte{0xff}
	p = binary.LittleEndian.AppendUint16(p, why.myErr)
	p = append(p, why.msg...)
	hdr := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), 0}
	_, _ = conn.Write(append(hdr, p...))
}

// bufferedConn reads through a bufio.Reader that may hold bytes already
// peeked from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// MongoDB opcodes a driver's first message has: OP_MSG (hello) or the
// legacy OP_QUERY (isMaster).
const (
	mongoOpQuery = 2004
	mongoOpMsg   = 2013
)

// isMongoHeader: b starts with a MongoDB message header (the client
// speaks first, as a PostgreSQL client does; the opcode tells them apart).
func isMongoHeader(b []byte) bool {
	if len(b) < 16 {
		return false
	}
	op := binary.LittleEndian.Uint32(b[12:])
	return op == mongoOpQuery || op == mongoOpMsg
}

// refuseMongo reads the driver's handshake and answers it with an error
// naming the cause ({ok: 0, errmsg}), which drivers raise as the reason
// the connection failed.
func refuseMongo(conn net.Conn, r *bufio.Reader, why refusal) {
	head := make([]byte, 16)
	if _, err := io.ReadFull(r, head); err != nil || !isMongoHeader(head) {
		return
	}
	n := int(binary.LittleEndian.Uint32(head))
	if n < 16 || n > 16<<20 {
		return
	}
	if _, err := io.CopyN(io.Discard, r, int64(n-16)); err != nil {
		return
	}
	code := int32(6) // HostUnreachable
	if why.sqlstate == "28000" {
		code = 18 // AuthenticationFailed
	}
	doc := bsoncore.NewDocumentBuilder().AppendDouble("ok", 0).AppendString("errmsg", why.msg).
		AppendInt32("code", code).Build()
	requestID := int32(binary.LittleEndian.Uint32(head[4:]))
	var msg []byte
	if binary.LittleEndian.Uint32(head[12:]) == mongoOpQuery {
		idx, b := wiremessage.AppendHeaderStart(nil, 1, requestID, wiremessage.OpReply)
		b = wiremessage.AppendReplyFlags(b, 0)
		b = wiremessage.AppendReplyCursorID(b, 0)
		b = wiremessage.AppendReplyStartingFrom(b, 0)
		b = wiremessage.AppendReplyNumberReturned(b, 1)
		msg = bsoncore.UpdateLength(append(b, doc...), idx, int32(len(b)+len(doc)))
	} else {
		idx, b := wiremessage.AppendHeaderStart(nil, 1, requestID, wiremessage.OpMsg)
		b = wiremessage.AppendMsgFlags(b, 0)
		b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
		msg = bsoncore.UpdateLength(append(b, doc...), idx, int32(len(b)+len(doc)))
	}
	_, _ = conn.Write(msg)
}
