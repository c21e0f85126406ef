package extproc

import (
	"errors"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// collector is the sink chains seal into in durable mode; the audit worker
// alone uses it.
type collector struct{ es []audit.Event }

func (c *collector) Write(e audit.Event) error {
	c.es = append(c.es, e)
	return nil
}

func (c *collector) take() []audit.Event {
	es := c.es
	c.es = nil
	return es
}

// auditAck counts a tunnel's events not yet committed (durable mode).
type auditAck struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending int
	err     error
}

func (a *auditAck) add() {
	a.mu.Lock()
	if a.cond == nil {
		a.cond = sync.NewCond(&a.mu)
	}
	a.pending++
	a.mu.Unlock()
}

func (a *auditAck) done(err error) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.pending--
	if err != nil && a.err == nil {
		a.err = err
	}
	a.cond.Broadcast()
	a.mu.Unlock()
}

// wait blocks until every event added is committed; it reports the first
// commit that failed.
func (a *auditAck) wait() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.pending > 0 {
		a.cond.Wait()
	}
	return a.err
}

// audit appends an event to the session's chain. A failing sink is
// logged: statements were already decided and answered.
func (t *tunnel) audit(e audit.Event) {
	t.auditWith(auditWork{e: e})
}

// auditWork is one queued event. A statement's text (sql) is normalized
// off the data path, unless keep says the target's trail keeps literals.
// A value, not a closure: the queue holds it without an allocation per
// statement.
type auditWork struct {
	t         *tunnel
	chain     *audit.Chain
	e         audit.Event
	statement bool
	sql       string
	keep      bool
	ack       *auditAck // durable mode: told when the event is committed
}

func (w *auditWork) do() {
	if w.statement {
		shape := w.t.memoSQL(w.sql)
		w.e.Statement, w.e.Fingerprint = shape[0], shape[1]
		if w.keep {
			w.e.Statement = w.sql
		}
	}
	if _, err := w.chain.Append(w.e); err != nil {
		w.t.log.Error("cannot write audit event", "kind", w.e.Kind, "err", err)
	}
}

// auditWith queues w's event, completed with the session's identity.
func (t *tunnel) auditWith(w auditWork) {
	if t.chain == nil {
		return
	}
	e := &w.e
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Session, e.Agent, e.ActingFor, e.Target = t.id, t.ident.Subject, t.ident.ActingFor, t.target.Name
	w.t, w.chain = t, t.chain
	if t.srv.cfg.AuditSync {
		t.ack.add()
		w.ack = &t.ack
		if !t.srv.auditQ.Add(w) {
			w.ack.done(errors.New("audit queue full (or closed)"))
		}
		return
	}
	t.srv.enqueueAudit(w)
}

// releaseToClient holds what a chunk sends the client until its audit
// events are committed (durable mode). If they cannot be, the client sees
// no success: the session ends with a protocol error instead.
func (t *tunnel) releaseToClient() {
	if !t.srv.cfg.AuditSync || t.chain == nil {
		return
	}
	if err := t.ack.wait(); err != nil && t.phaseOK() {
		t.log.Error("audit events not committed; session ended", "err", err)
		t.out.ToClient = t.out.ToClient[:0]
		if e, ok := t.sess.(session.Expirer); ok {
			e.Expire("the audit trail is failing, so the statement's result is withheld: "+err.Error(), &t.out)
		}
		t.auditFailed = true
	}
}

// phaseOK: the session has not yet been ended for a failing trail.
func (t *tunnel) phaseOK() bool { return !t.auditFailed }

// RecordsResults implements session.Observer: rows are kept for the audit
// trail's recordings only.
func (t *tunnel) RecordsResults() bool { return t.chain != nil }

// Statement implements session.Observer: one audit event per statement,
// its literals redacted unless the target's audit_literals tag says keep.
func (t *tunnel) Statement(r session.StatementRecord) {
	if r.Error == "" && t.auth != nil && changesSchema(r.Kinds) {
		t.auth.SchemaChanged()
	}
	t.countStatement(r.Outcome, r.End.Sub(r.Start).Seconds())
	t.guardStatement(r)
	if r.Outcome == "deny" && slices.Contains(r.Policies, policy.GuardrailsPolicy) {
		instruments.guardrails.Add(t.ctx, 1, metric.WithAttributes(attribute.String("sluice.target", t.target.Name), attribute.String("sluice.guardrail", "refusal")))
	}
	if t.span.IsRecording() {
		t.statementSpan(r, t.normalize(r.SQL)) // spans never carry literals
	}
	if t.chain == nil {
		return
	}
	t.auditWith(auditWork{e: audit.Event{
		Kind: audit.KindStatement, Time: r.Start.UTC(),
		Decision: r.Outcome, Reason: r.Reason, Policies: r.Policies, Masked: r.Masked, Rows: r.Rows,
		LatencyMS: float64(r.End.Sub(r.Start).Microseconds()) / 1000, Error: r.Error, Result: recorded(r.Result),
	}, statement: true, sql: r.SQL, keep: t.target.Tags["audit_literals"] == "keep"})
}

func recorded(r *session.Result) *audit.Result {
	if r == nil {
		return nil
	}
	return &audit.Result{Columns: r.Columns, Rows: r.Rows, Truncated: r.Truncated}
}

func (t *tunnel) closeAudit() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.chain != nil {
		t.audit(audit.Event{Kind: audit.KindSessionClose, BytesIn: t.bytesIn, BytesOut: t.bytesOut})
		t.chain = nil
	}
}

// normalize is the statement's text with literals redacted.
func (t *tunnel) normalize(sql string) string {
	return t.memoSQL(sql)[0]
}

// memoSQL is the statement's normalized text and fingerprint. They take
// parsing again; sessions repeat their statements, so the results are kept
// (a few hundred per tunnel, and per shape in policy.Shapes).
func (t *tunnel) memoSQL(sql string) [2]string {
	t.memoMu.Lock()
	defer t.memoMu.Unlock()
	if v, ok := t.sqlMemo[sql]; ok {
		return v
	}
	if t.sqlMemo == nil || len(t.sqlMemo) >= 512 {
		t.sqlMemo = map[string][2]string{}
	}
	norm, fp := t.shapes.Shape(t.target.Protocol, sql)
	v := [2]string{norm, fp}
	t.sqlMemo[sql] = v
	return v
}

// changesSchema reports statement kinds after which the catalog is read
// again.
func changesSchema(kinds []string) bool {
	for _, k := range kinds {
		switch k {
		case "create", "alter", "drop", "grant", "select_into", "rename", "truncate":
			return true
		}
	}
	return false
}
