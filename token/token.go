// Package token mints short-lived agent JWTs from a local signing key and
// publishes the matching JWKS for Envoy's jwt_authn filter. It serves the
// demo and the tests; real deployments use their identity provider.
package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
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
