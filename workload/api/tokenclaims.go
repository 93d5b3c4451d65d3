package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// TokenClaims are the parts of a ServiceAccount token calico-lb reads,
// never to trust them (the apiserver does that): when a token expires,
// whom it is for, and whose it is. The controller reads its own token's
// to renew it; a speaker reads a caller's to refuse at once what cannot
// be for it.
type TokenClaims struct {
	IssuedAt  int64    `json:"iat"`
	Expires   int64    `json:"exp"`
	Audiences Audience `json:"aud"`
	K8s       struct {
		ServiceAccount struct {
			UID string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// ReadTokenClaims decodes a JWT's payload, without checking its signature.
func ReadTokenClaims(token string) (TokenClaims, error) {
	var c TokenClaims
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return c, errors.New("not a JWT")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("JWT payload: %w", err)
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return c, fmt.Errorf("JWT payload: %w", err)
	}
	return c, nil
}

// Audience is a JWT's aud: one string or a list of them.
type Audience []string

func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}
