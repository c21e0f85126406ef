package approval

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Approver is an authenticated human.
type Approver struct {
	Subject string
	Groups  []string
}

// Authenticator checks a bearer token (OIDC, same issuer as the agents').
type Authenticator interface {
	Authenticate(bearer string) (Approver, error)
}

// Authorizer decides whether a human may approve requests on a target
// (Cedar's approve action).
type Authorizer interface {
	MayApprove(a Approver, target string) (bool, string)
}

//go:embed page.html
var page []byte

// Handler serves the JSON API and the approvals page:
//
//	GET  /                                   the page (Approve / Deny buttons)
//	GET  /api/v1/requests[?status=pending]   requests the caller may decide
//	GET  /api/v1/requests/{id}
//	POST /api/v1/requests/{id}/approve       {"scope": "once"|"fingerprint", "minutes": N, "comment": "…"}
//	POST /api/v1/requests/{id}/deny          {"comment": "…"}
//
// Sessions pauses and resumes the live sessions of this sluice (the
// ext_proc server).
type Sessions interface {
	SessionTarget(id string) (target, agent, actingFor string, err error)
	Pause(id, by, reason string) error
	Resume(ctx context.Context, id, by string) error
}

// Handler serves the approvals page and API; sessions, when set, adds
// pausing and resuming sessions (the same permission as approving).
func Handler(svc *Service, authn Authenticator, authz Authorizer, sessions Sessions, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &api{svc: svc, authn: authn, authz: authz, sessions: sessions, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /api/v1/requests", h.auth(h.list))
	mux.HandleFunc("GET /api/v1/requests/{id}", h.auth(h.get))
	mux.HandleFunc("POST /api/v1/requests/{id}/approve", h.auth(h.decide(true)))
	mux.HandleFunc("POST /api/v1/requests/{id}/deny", h.auth(h.decide(false)))
	if sessions != nil {
		mux.HandleFunc("POST /api/v1/sessions/{id}/pause", h.auth(h.control(true)))
		mux.HandleFunc("POST /api/v1/sessions/{id}/resume", h.auth(h.control(false)))
	}
	return mux
}

type api struct {
	svc      *Service
	authn    Authenticator
	authz    Authorizer
	sessions Sessions
	log      *slog.Logger
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (h *api) auth(next func(http.ResponseWriter, *http.Request, Approver)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || raw == "" {
			fail(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
		a, err := h.authn.Authenticate(raw)
		if err != nil {
			fail(w, http.StatusUnauthorized, err.Error())
			return
		}
		next(w, r, a)
	}
}

func (h *api) list(w http.ResponseWriter, r *http.Request, a Approver) {
	reqs, err := h.svc.store.List(r.Context(), r.URL.Query().Get("status"), 200)
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []*Request{}
	for _, q := range reqs {
		if ok, _ := h.authz.MayApprove(a, q.Target); ok {
			out = append(out, q)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// load reads the request named in the path, if the approver may decide it;
// otherwise it has answered the HTTP request.
func (h *api) load(w http.ResponseWriter, r *http.Request, a Approver) (*Request, bool) {
	q, err := h.svc.store.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		fail(w, http.StatusNotFound, err.Error())
	case err != nil:
		fail(w, http.StatusInternalServerError, err.Error())
	default:
		ok, reason := h.authz.MayApprove(a, q.Target)
		if ok {
			return q, true
		}
		fail(w, http.StatusForbidden, reason)
	}
	return nil, false
}

func (h *api) get(w http.ResponseWriter, r *http.Request, a Approver) {
	if q, ok := h.load(w, r, a); ok {
		writeJSON(w, http.StatusOK, q)
	}
}

// readBody decodes an optional JSON body; false: it answered 400.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "malformed body: "+err.Error())
		return false
	}
	return true
}

type decideBody struct {
	Scope   string `json:"scope"`
	Minutes int    `json:"minutes"`
	Comment string `json:"comment"`
}

func (h *api) decide(approve bool) func(http.ResponseWriter, *http.Request, Approver) {
	return func(w http.ResponseWriter, r *http.Request, a Approver) {
		var b decideBody
		if !readBody(w, r, &b) {
			return
		}
		q, ok := h.load(w, r, a)
		if !ok {
			return
		}
		// Four eyes: the agent, and the human it acts for, never decide
		// their own request.
		if a.Subject == q.Agent || (q.ActingFor != "" && a.Subject == q.ActingFor) {
			fail(w, http.StatusForbidden, "nobody decides their own request")
			return
		}
		d := Decision{Approve: approve, Scope: b.Scope, For: time.Duration(b.Minutes) * time.Minute, By: a.Subject, Comment: b.Comment}
		res, err := h.svc.Decide(r.Context(), q.ID, d)
		switch {
		case errors.Is(err, ErrDecided):
			fail(w, http.StatusConflict, fmt.Sprintf("request %s was already decided", q.ID))
		case err != nil:
			fail(w, http.StatusBadRequest, err.Error())
		default:
			writeJSON(w, http.StatusOK, res)
		}
	}
}

// ErrNoSession is what Sessions returns for an id it does not hold.
var ErrNoSession = errors.New("no live session with that id on this sluice (a session is paused and resumed through the replica that carries it)")

// control pauses or resumes a live session. Whoever may approve the
// session's statements may; the agent and the human it acts for may not.
func (h *api) control(pause bool) func(http.ResponseWriter, *http.Request, Approver) {
	return func(w http.ResponseWriter, r *http.Request, a Approver) {
		var b decideBody
		if !readBody(w, r, &b) {
			return
		}
		id := r.PathValue("id")
		target, agent, actingFor, err := h.sessions.SessionTarget(id)
		if errors.Is(err, ErrNoSession) {
			fail(w, http.StatusNotFound, err.Error())
			return
		} else if err != nil {
			fail(w, http.StatusInternalServerError, err.Error())
			return
		}
		if ok, reason := h.authz.MayApprove(a, target); !ok {
			fail(w, http.StatusForbidden, reason)
			return
		}
		if a.Subject == agent || (actingFor != "" && a.Subject == actingFor) {
			fail(w, http.StatusForbidden, "nobody pauses or resumes their own session")
			return
		}
		status := "paused"
		if pause {
			err = h.sessions.Pause(id, a.Subject, b.Comment)
		} else {
			status = "running"
			err = h.sessions.Resume(r.Context(), id, a.Subject)
		}
		if err != nil {
			fail(w, http.StatusConflict, err.Error())
			return
		}
		h.log.Info("session "+status, "session", id, "by", a.Subject)
		writeJSON(w, http.StatusOK, map[string]string{"session": id, "status": status, "by": a.Subject})
	}
}
