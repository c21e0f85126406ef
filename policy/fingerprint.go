package policy

import (
	"crypto/sha256"
	"encoding/hex"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pingcap/tidb/pkg/parser"
)

// Fingerprint identifies a statement's shape, its constants aside, with the
// database's own normalization: libpg_query's fingerprint for PostgreSQL,
// TiDB's normalized digest for MySQL. SQL that cannot be fingerprinted is
// identified by its exact text.
func Fingerprint(protocol, sql string) string {
	switch protocol {
	case "postgres":
		if fp, err := pg_query.Fingerprint(sql); err == nil {
			return "pg:" + fp
		}
	case "mysql":
		if _, d := parser.NormalizeDigest(sql); d != nil {
			return "my:" + d.String()[:32]
		}
	case "mongodb":
		// The session's text is already the command's shape (MongoShape).
		h := sha256.Sum256([]byte(sql))
		return "mongo:" + hex.EncodeToString(h[:16])
	}
	h := sha256.Sum256([]byte(sql))
	return "text:" + hex.EncodeToString(h[:16])
}

// Normalize replaces a statement's literals with placeholders, for audit
// records that must not carry the data in WHERE clauses and VALUES lists.
// SQL that cannot be normalized is withheld entirely.
func Normalize(protocol, sql string) string {
	switch protocol {
	case "postgres":
		if n, err := pg_query.Normalize(sql); err == nil {
			return n
		}
	case "mysql":
		if n := parser.Normalize(sql, "ON"); n != "" {
			return n
		}
	case "mongodb":
		// MongoDB sessions hand over MongoShape's text: values are "?".
		return sql
	}
	return Unparseable
}

// Unparseable stands for a statement Normalize could not normalize.
const Unparseable = "[unparseable statement withheld]"
