package extproc

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluicedb/sluice/extproc/session"
)

// identityFrom reads the claims Envoy's jwt_authn filter validated. Clients
// cannot forge dynamic metadata, so a tunnel without it has no identity.
func identityFrom(req *extprocv3.ProcessingRequest, payloadKey, groupsKey string, audiences []string) (session.Identity, error) {
	ns := req.GetMetadataContext().GetFilterMetadata()[JWTNamespace]
	payload := ns.GetFields()[payloadKey].GetStructValue()
	if payload == nil {
		return session.Identity{}, errors.New("no validated token: the tunnel carries no agent identity")
	}
	claims := payload.AsMap()
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
	if exp, ok := claims["exp"].(float64); ok {
		id.Expiry = time.Unix(int64(exp), 0)
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
