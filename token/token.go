// Package token mints short-lived agent JWTs from a local signing key and
// publishes the matching JWKS for Envoy's jwt_authn filter. It serves the
// demo and the tests; real deployments use their identity provider.
package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GenerateKey writes a new ES256 signing key (JWK, private) to keyPath and
// its public JWKS to jwksPath.
func GenerateKey(keyPath, jwksPath string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("cannot generate signing key: %w", err)
	}
	var kid [8]byte
	_, _ = rand.Read(kid[:])
	priv := jose.JSONWebKey{Key: k, KeyID: fmt.Sprintf("%x", kid), Algorithm: string(jose.ES256), Use: "sig"}
	pb, err := json.Marshal(priv)
	if err != nil {
		return fmt.Errorf("cannot encode signing key: %w", err)
	}
	if err := os.WriteFile(keyPath, pb, 0o600); err != nil {
		return fmt.Errorf("cannot write signing key: %w", err)
	}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv.Public()}}
	jb, err := json.MarshalIndent(jwks, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode JWKS: %w", err)
	}
	if err := os.WriteFile(jwksPath, jb, 0o644); err != nil {
		return fmt.Errorf("cannot write JWKS: %w", err)
	}
	return nil
}

// Claims describe the token to mint.
type Claims struct {
	Issuer   string
	Audience []string
	Subject  string
	Groups   []string
	ActFor   string // the human the agent acts for (act.sub)
	TTL      time.Duration
	Now      time.Time // zero: the current time
	// NoExpiry leaves exp out: such a token is refused everywhere (it
	// exists to test that).
	NoExpiry bool
}

// Mint signs a JWT with the key at keyPath.
func Mint(keyPath string, c Claims) (string, error) {
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return "", fmt.Errorf("cannot read signing key: %w", err)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(b, &jwk); err != nil {
		return "", fmt.Errorf("cannot parse signing key: %w", err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", jwk.KeyID))
	if err != nil {
		return "", fmt.Errorf("cannot create signer: %w", err)
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	std := jwt.Claims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  jwt.Audience(c.Audience),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry:    jwt.NewNumericDate(now.Add(c.TTL)),
	}
	if c.NoExpiry {
		std.Expiry = nil
	}
	extra := map[string]any{"groups": c.Groups}
	if c.ActFor != "" {
		extra["act"] = map[string]string{"sub": c.ActFor}
	}
	tok, err := jwt.Signed(sig).Claims(std).Claims(extra).Serialize()
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return tok, nil
}

// Verifier checks bearer tokens against an issuer's keys: sluice's own
// HTTP APIs (approvals) take the same OIDC tokens Envoy validates.
type Verifier struct {
	Issuer    string
	Audiences []string
	// Keys returns the issuer's current key set.
	Keys func() (*jose.JSONWebKeySet, error)
	// MaxTTL caps how far ahead a token may expire; ClockSkew is the
	// leeway for exp (default 30s). The same as Envoy's (config.JWT).
	MaxTTL, ClockSkew time.Duration
}

// Verified is a valid token's identity.
type Verified struct {
	Subject string
	Groups  []string
	Expiry  time.Time
}

// Verify parses and checks a compact JWT: signature, issuer, audience, expiry.
func (v *Verifier) Verify(raw, groupsClaim string) (Verified, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.EdDSA})
	if err != nil {
		return Verified{}, fmt.Errorf("malformed token: %w", err)
	}
	keys, err := v.Keys()
	if err != nil {
		return Verified{}, fmt.Errorf("cannot load the issuer's keys: %w", err)
	}
	var std jwt.Claims
	extra := map[string]any{}
	if err := tok.Claims(keys, &std, &extra); err != nil {
		return Verified{}, fmt.Errorf("invalid token signature: %w", err)
	}
	skew := v.ClockSkew
	if skew == 0 {
		skew = 30 * time.Second
	}
	now := time.Now()
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: v.Issuer, AnyAudience: v.Audiences, Time: now}, skew); err != nil {
		return Verified{}, fmt.Errorf("invalid token: %w", err)
	}
	if std.Expiry == nil {
		return Verified{}, errors.New("invalid token: it has no exp claim (tokens must expire)")
	}
	if v.MaxTTL > 0 && std.Expiry.Time().Sub(now) > v.MaxTTL+skew {
		return Verified{}, fmt.Errorf("invalid token: it lives longer than the gateway allows (jwt.max_ttl %s)", v.MaxTTL)
	}
	if std.Subject == "" {
		return Verified{}, errors.New("token has no sub claim")
	}
	out := Verified{Subject: std.Subject}
	if std.Expiry != nil {
		out.Expiry = std.Expiry.Time()
	}
	switch g := extra[groupsClaim].(type) {
	case string:
		out.Groups = strings.Fields(g)
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				out.Groups = append(out.Groups, s)
			}
		}
	}
	return out, nil
}

// FileKeys reads a JWKS file (again on every call: rotation needs no restart).
func FileKeys(path string) func() (*jose.JSONWebKeySet, error) {
	return func() (*jose.JSONWebKeySet, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("cannot parse JWKS %s: %w", path, err)
		}
		return &set, nil
	}
}

// URLKeys fetches an issuer's JWKS over HTTPS (verified against caFile, or
// the system's CAs), caching it for five minutes.
func URLKeys(uri, caFile string) func() (*jose.JSONWebKeySet, error) {
	var (
		mu      sync.Mutex
		cached  *jose.JSONWebKeySet
		fetched time.Time
	)
	client := &http.Client{Timeout: 10 * time.Second}
	if caFile != "" {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: CAPool(caFile)}}
	}
	return func() (*jose.JSONWebKeySet, error) {
		mu.Lock()
		defer mu.Unlock()
		if cached != nil && time.Since(fetched) < 5*time.Minute {
			return cached, nil
		}
		resp, err := client.Get(uri)
		if err != nil {
			if cached != nil {
				return cached, nil // keep the last good keys
			}
			return nil, err
		}
		defer resp.Body.Close()
		var set jose.JSONWebKeySet
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("JWKS %s: %s", uri, resp.Status)
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
			return nil, fmt.Errorf("cannot parse JWKS %s: %w", uri, err)
		}
		cached, fetched = &set, time.Now()
		return cached, nil
	}
}

// CAPool is a pool holding the certificates of caFile (empty if unreadable:
// verification then fails, closed).
func CAPool(caFile string) *x509.CertPool {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	return pool
}
