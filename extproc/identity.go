package extproc

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
)

// tokenRules are the checks sluice makes of a validated token's claims,
// beyond Envoy's: its audience, and (the same as Envoy's) that it expires,
// not too far ahead, within the same clock skew.
type tokenRules struct {
	groupsKey    string
	audiences    []string
	maxTTL, skew time.Duration
	now          func() time.Time
}

// identityFrom reads the claims Envoy's jwt_authn filter verified, from
// the header it sets (and strips from clients). A tunnel without exactly
// one has no identity.
func identityFrom(values []string, rules tokenRules) (session.Identity, error) {
	groupsKey, audiences := rules.groupsKey, rules.audiences
	if len(values) != 1 {
		return session.Identity{}, errors.New("no validated token: the tunnel carries no agent identity")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(values[0], "="))
	if err != nil {
		return session.Identity{}, fmt.Errorf("the verified claims are not base64url: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return session.Identity{}, fmt.Errorf("the verified claims are not a JSON object: %w", err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return session.Identity{}, errors.New("token has no sub claim")
	}
	if len(audiences) > 0 && !audienceOK(claims["aud"], audiences) {
		return session.Identity{}, fmt.Errorf("token audience %v is not accepted by this gateway", claims["aud"])
	}
	id := session.Identity{Subject: sub, Claims: claims}
	// RFC 8693's act claim names the party the agent acts for.
	if act, ok := claims["act"].(map[string]any); ok {
		id.ActingFor, _ = act["sub"].(string)
	}
	exp, ok := claims["exp"].(float64)
	if !ok {
		return session.Identity{}, errors.New("token has no exp claim: tokens must expire")
	}
	// The session may last as long as Envoy would accept the token.
	id.Expiry = time.Unix(int64(exp), 0).Add(rules.skew)
	now := time.Now()
	if rules.now != nil {
		now = rules.now()
	}
	if !now.Before(id.Expiry) {
		return session.Identity{}, errors.New("token expired")
	}
	if rules.maxTTL > 0 && id.Expiry.Sub(now) > rules.maxTTL+rules.skew {
		return session.Identity{}, fmt.Errorf("token lives longer than the gateway allows (jwt.max_ttl %s)", rules.maxTTL)
	}
	switch g := claims[groupsKey].(type) {
	case nil:
	case string:
		id.Groups = strings.Fields(g)
	case []any:
		for _, v := range g {
			s, ok := v.(string)
			if !ok {
				return session.Identity{}, fmt.Errorf("claim %q holds a non-string group", groupsKey)
			}
			id.Groups = append(id.Groups, s)
		}
	default:
		return session.Identity{}, fmt.Errorf("claim %q is neither a string nor a list", groupsKey)
	}
	return id, nil
}

// audienceOK reports whether the aud claim (a string or a list) names one
// of the accepted audiences.
func audienceOK(aud any, accepted []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(accepted, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(accepted, s) {
				return true
			}
		}
	}
	return false
}
