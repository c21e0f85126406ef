package extproc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluicedb/sluice/extproc/session"
)

// identityFrom reads the claims Envoy's jwt_authn filter validated. Clients
// cannot forge dynamic metadata, so a tunnel without it has no identity.
func identityFrom(req *extprocv3.ProcessingRequest, payloadKey, groupsKey string) (session.Identity, error) {
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
	id := session.Identity{Subject: sub, Claims: claims}
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
