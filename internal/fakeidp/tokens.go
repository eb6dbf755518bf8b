package fakeidp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
)

// tokenResponse is a successful token endpoint answer. Optional parts follow
// the Microsoft identity platform: an id_token only for the openid scope, a
// refresh token only for offline_access, client_info only when the client
// asked for it (MSAL always does).
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	ClientInfo   string `json:"client_info,omitempty"`
}

// issueTokens makes the tokens of one successful token response and counts it.
func (s *Server) issueTokens(username, clientID string, scopes []string, wantClientInfo bool) tokenResponse {
	s.mu.Lock()
	now := s.cfg.now()
	s.counts.TokensIssued++
	var rt string
	if slices.Contains(scopes, "offline_access") {
		key := grantKey{username, clientID}
		rt = s.grants[key]
		if rt == "" {
			rt = "fakeidp-rt." + randomString(32)
			s.grants[key] = rt
			s.refresh[rt] = key
		}
	}
	s.mu.Unlock()

	lifetime := int64(s.cfg.tokenLifetime / time.Second)
	oid := nameUUID("oid", s.tenantID, username)
	sub := nameHash("sub", s.tenantID, username, clientID)
	issuer := s.authority + "/v2.0"
	exp := now.Unix() + lifetime

	resp := tokenResponse{
		TokenType:    "Bearer",
		Scope:        strings.Join(scopes, " "),
		ExpiresIn:    lifetime,
		ExtExpiresIn: lifetime,
		RefreshToken: rt,
		AccessToken: unsignedJWT(map[string]any{
			"aud": "fakeidp-resource", "iss": issuer, "iat": now.Unix(), "nbf": now.Unix(), "exp": exp,
			"azp": clientID, "oid": oid, "sub": sub, "tid": s.tenantID, "upn": username,
			"scp": strings.Join(scopes, " "), "uti": randomString(16), "ver": "2.0",
		}),
	}
	if slices.Contains(scopes, "openid") {
		resp.IDToken = unsignedJWT(map[string]any{
			"aud": clientID, "iss": issuer, "iat": now.Unix(), "nbf": now.Unix(), "exp": exp,
			"oid": oid, "sub": sub, "tid": s.tenantID,
			"preferred_username": username, "name": displayName(username), "ver": "2.0",
		})
	}
	if wantClientInfo {
		ci, _ := json.Marshal(map[string]string{"uid": oid, "utid": s.tenantID}) // strings never fail
		resp.ClientInfo = base64.RawURLEncoding.EncodeToString(ci)
	}
	return resp
}

// unsignedJWT encodes claims as a JWT with "alg":"none" and no signature.
func unsignedJWT(claims map[string]any) string {
	payload, _ := json.Marshal(claims) // strings and numbers never fail
	const header = `{"alg":"none","typ":"JWT"}`
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload) + "."
}

// displayName makes the name claim from a username: "alice@x" -> "alice".
func displayName(username string) string {
	local, _, _ := strings.Cut(username, "@")
	if local == "" {
		return username
	}
	return local
}

var guidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// tenantID is the tenant itself when it is a GUID, else a GUID derived from it.
func tenantID(tenant string) string {
	if guidPattern.MatchString(tenant) {
		return tenant
	}
	return nameUUID("tenant", tenant)
}

// nameUUID derives a stable UUID-shaped identifier (version 5 layout, but
// SHA-256) from its parts.
func nameUUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// nameHash derives a stable opaque identifier from its parts.
func nameHash(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randomString returns n random bytes in unpadded base64url.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// userCodeAlphabet has no letters that are easily confused (no I, O, 0, 1).
const userCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// newUserCode returns a code like "K7QM-ZP3T".
func newUserCode() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	code := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			code = append(code, '-')
		}
		code = append(code, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
	}
	return string(code)
}
