// Package mysql is sluice's MySQL/MariaDB client/server protocol session. It
// is fed the tunnel's bytes as Envoy streams them and decides what each side
// receives. Packets (3-byte length, 1-byte sequence id; a 16 MB payload
// continues in the next packet) are framed here; sluice's own codec, since
// no well-kept Go library for the server side is reachable.
//
// Packet flow (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basics.html):
//
//	client                          sluice                                 server
//	                                ◀── clears SSL, COMPRESS, LOCAL_FILES, ◀── HandshakeV10 (seq 0)
//	                                    QUERY_ATTRIBUTES, MariaDB extensions
//	HandshakeResponse41 (seq 1) ──▶ refuses TLS; checks the database; ─────▶ (capabilities cleared)
//	auth switch / more data    ◀──▶ passed through, one client packet per ◀──▶ AuthSwitch, AuthMoreData
//	                                server request; anything else refused
//	                                ◀────────────────────────────────────── OK (command phase)
//
//	with a brokered login (the target holds credentials for the agent's groups):
//	                                keeps the greeting's scramble and plugin ◀── HandshakeV10
//	HandshakeResponse41 (seq 1) ──▶ user := the login's user, auth data := ──▶ HandshakeResponse41
//	(no password)                   native_password or caching_sha2 proof
//	                                answers AuthSwitch itself (seq n+1) ◀──▶ AuthSwitchRequest (seq n)
//	                                caching_sha2 full auth: asks for the ◀──▶ AuthMoreData 0x04, PEM key
//	                                RSA key, sends the password RSA-OAEP'd
//	OK / ERR (seq 2) ◀────────────── renumbered to the client's next seq ◀── OK / ERR (seq n)
//	(any client packet before that ends the session)
//	COM_QUERY (seq 0) ─────────────▶ decide: allowed ───────────────────────▶ COM_QUERY
//	ERR 1142 (seq 1) ◀───────────── decide: refused (never forwarded)
//	                 ◀───────────── rows masked per the plan ◀───────────── column defs, rows, EOF/OK
//	(after login and after COM_RESET_CONNECTION, before any client command)
//	                                SET timeout; SELECT @@SESSION.sql_mode, ──▶ (answers read, not relayed)
//	                                @@SESSION.character_set_client
//	COM_QUERY, COM_QUERY (one write) ▶ the second waits in backlog until the
//	                                 server answered the first
//	COM_STMT_PREPARE ──────────────▶ decide at prepare ─────────────────────▶ PREPARE_OK: the id is
//	                                                                           known from here on
//	COM_STMT_EXECUTE ──────────────▶ decide under the env of the prepare ──▶ binary rows masked;
//	  (id 0xFFFFFFFF rewritten to the last id the server confirmed)          CURSOR_EXISTS: cursor kept
//	COM_STMT_FETCH ────────────────▶ only a cursor sluice saw opened ──────▶ rows masked by the execute's plan
//	SHOW WARNINGS / SHOW ERRORS ───▶ refused while the server's diagnostics area may quote a masked value
//	COM_QUERY/EXECUTE (approval) ──▶ held; later packets wait; approved ───▶ the command, then the rest
//	ERR 1142 (seq 1) ◀───────────── denied / timed out, naming the request
//	COM_INIT_DB ───────────────────▶ decided as USE ────────────────────────▶ default database tracked
//	COM_CHANGE_USER, binlog, replica, COM_FIELD_LIST, COM_PROCESS_KILL → ERR
//
// A refusal answers the command with one ERR packet of sequence id 1, the
// answer the client expects; the server never sees the command, so both
// sides start the next command at sequence 0 in step. Masked rows keep
// their sequence ids.
package mysql
