package tursotest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// Database tokens are JWTs signed with Ed25519, the shape Turso issues: the
// claim "a" is "ro" for read-only tokens and "rw" otherwise, "id" names the
// database, "rid" identifies the token, "exp" is the expiry (absent for
// "never"). Each database has its own signing key and invalidating its tokens
// replaces the key, which is how Turso makes every earlier token fail at once.

type tokenClaims struct {
	Access     string `json:"a"`
	DatabaseID string `json:"id"`
	// TokenID makes every token distinct, even two minted in the same second.
	TokenID  string `json:"rid"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp,omitempty"`
}

// tokenHeader is base64url({"alg":"EdDSA","typ":"JWT"}).
const tokenHeader = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9"

func signToken(key ed25519.PrivateKey, c tokenClaims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signed := tokenHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(key, []byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// verifyToken checks the signature against key and returns the claims; expiry
// and database are the caller's to check.
func verifyToken(key ed25519.PublicKey, token string) (tokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != tokenHeader {
		return tokenClaims{}, errors.New("malformed token")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(key, []byte(parts[0]+"."+parts[1]), sig) {
		return tokenClaims{}, errors.New("bad token signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tokenClaims{}, errors.New("malformed token payload")
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return tokenClaims{}, errors.New("malformed token claims")
	}
	return c, nil
}
