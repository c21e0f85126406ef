package mcptools

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres is a DB on a PostgreSQL target, through a local connector
// address. It keeps one connection and opens another if that one fails.
type Postgres struct {
	URL  string // postgres://user@127.0.0.1:port/db?sslmode=disable: no password
	mu   sync.Mutex
	conn *pgx.Conn
}

// Dialect implements DB.
func (p *Postgres) Dialect() string { return "postgres" }

// Close implements DB.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		err := p.conn.Close(context.Background())
		p.conn = nil
		return err
	}
	return nil
}

// Query implements DB: every value comes back as text, as the gateway
// sent it.
func (p *Postgres) Query(ctx context.Context, q string, params []any, maxRows int) (*Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil || p.conn.IsClosed() {
		c, err := pgx.Connect(ctx, p.URL)
		if err != nil {
			return nil, pgError(err)
		}
		p.conn = c
	}
	args := append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, params...)
	if len(params) == 0 {
		args = []any{pgx.QueryExecModeSimpleProtocol}
	}
	rows, err := p.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, pgError(err)
	}
	defer rows.Close()
	res := &Result{Columns: []string{}, Rows: [][]*string{}}
	for _, f := range rows.FieldDescriptions() {
		res.Columns = append(res.Columns, f.Name)
	}
	for rows.Next() {
		if len(res.Rows) >= maxRows {
			res.Truncated = true
			continue // read the rest: the connection stays in step
		}
		raw := rows.RawValues()
		row := make([]*string, len(raw))
		for i, v := range raw {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		res.Rows = append(res.Rows, row)
	}
	res.RowCount = len(res.Rows)
	if err := rows.Err(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && len(res.Rows) > 0 && strings.Contains(pe.Message, "result cut") {
			// The guardrails cut the result: what arrived before is the
			// agent's, with the reason.
			res.Truncated, res.Notice = true, pe.Message
			return res, nil
		}
		return nil, pgError(err)
	}
	res.Command = rows.CommandTag().String()
	return res, nil
}

func pgError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Detail != "" {
			msg += " — " + pe.Detail
		}
		if pe.Hint != "" {
			msg += " (hint: " + pe.Hint + ")"
		}
		return &StatementError{Code: pe.Code, Message: msg}
	}
	return err
}

// MySQL is a DB on a MySQL/MariaDB target, through a local connector
// address.
type MySQL struct {
	db *sql.DB
}

// NewMySQL opens a MySQL DB: user@tcp(addr)/database, no password.
func NewMySQL(addr, user, database string) (*MySQL, error) {
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = user, "tcp", addr, database
	cfg.AllowNativePasswords = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &MySQL{db: db}, nil
}

// Dialect implements DB.
func (m *MySQL) Dialect() string { return "mysql" }

// Close implements DB.
func (m *MySQL) Close() error { return m.db.Close() }

// Query implements DB.
func (m *MySQL) Query(ctx context.Context, q string, params []any, maxRows int) (*Result, error) {
	rows, err := m.db.QueryContext(ctx, q, params...)
	if err != nil {
		return nil, myError(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, myError(err)
	}
	res := &Result{Columns: append([]string{}, cols...), Rows: [][]*string{}}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if len(res.Rows) >= maxRows {
			res.Truncated = true
			continue
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, myError(err)
		}
		row := make([]*string, len(cols))
		for i, v := range vals {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		res.Rows = append(res.Rows, row)
	}
	res.RowCount = len(res.Rows)
	if err := rows.Err(); err != nil {
		var me *gomysql.MySQLError
		if errors.As(err, &me) && len(res.Rows) > 0 && strings.Contains(me.Message, "result cut") {
			res.Truncated, res.Notice = true, me.Message
			return res, nil
		}
		return nil, myError(err)
	}
	res.Command = fmt.Sprintf("SELECT %d", res.RowCount)
	return res, nil
}

func myError(err error) error {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return &StatementError{Code: strconv.Itoa(int(me.Number)), Message: me.Message}
	}
	return err
}
