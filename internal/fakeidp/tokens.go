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

// issue describes one successful token response.
type issue struct {
	tenant     *tenant
	clientID   string
	grant      string   // grant_type, for the user's counts
	username   string   // "" for an app token (client credentials)
	scopes     []string // as requested
	clientInfo bool     // the client asked for client_info
	nonce      string   // for the id_token, from the authorization request
}

// issueTokens makes the tokens of one successful token response and counts it.
func (s *Server) issueTokens(is issue) tokenResponse {
	t := is.tenant
	s.mu.Lock()
	now := s.cfg.now()
	lifetime := int64(s.lifetime / time.Second)
	s.counts.TokensIssued++
	t.counts.TokensIssued++
	var rt string
	if is.username != "" {
		s.countUser(t, is.username, func(c *Counts) { c.Token++; c.TokensIssued++; countGrant(c, is.grant) })
		if slices.Contains(is.scopes, "offline_access") {
			key := grantKey{t.name, is.username, is.clientID}
			rt = s.grants[key]
			if rt == "" {
				rt = "fakeidp-rt." + randomString(32)
				s.grants[key] = rt
				s.refresh[rt] = key
			}
		}
	}
	s.mu.Unlock()

	exp := now.Unix() + lifetime
	if is.username == "" {
		return s.appTokens(is, now.Unix(), exp, lifetime)
	}
	oid := nameUUID("oid", t.id, is.username)
	sub := nameHash("sub", t.id, is.username, is.clientID)
	resp := tokenResponse{
		TokenType:    "Bearer",
		Scope:        strings.Join(is.scopes, " "),
		ExpiresIn:    lifetime,
		ExtExpiresIn: lifetime,
		RefreshToken: rt,
		AccessToken: s.signer.sign(map[string]any{
			"aud": resourceOf(is.scopes), "iss": t.issuer(), "iat": now.Unix(), "nbf": now.Unix(), "exp": exp,
			"azp": is.clientID, "appid": is.clientID, "oid": oid, "sub": sub, "tid": t.id,
			"upn": is.username, "name": displayName(is.username), "idtyp": "user",
			"scp": strings.Join(is.scopes, " "), "uti": randomString(16), "ver": "2.0",
		}),
	}
	if slices.Contains(is.scopes, "openid") {
		claims := map[string]any{
			"aud": is.clientID, "iss": t.issuer(), "iat": now.Unix(), "nbf": now.Unix(), "exp": exp,
			"oid": oid, "sub": sub, "tid": t.id,
			"preferred_username": is.username, "name": displayName(is.username), "ver": "2.0",
		}
		if is.nonce != "" {
			claims["nonce"] = is.nonce
		}
		resp.IDToken = s.signer.sign(claims)
	}
	if is.clientInfo {
		ci, _ := json.Marshal(map[string]string{"uid": oid, "utid": t.id}) // strings never fail
		resp.ClientInfo = base64.RawURLEncoding.EncodeToString(ci)
	}
	return resp
}

// appTokens makes the response to a client credentials grant: an access
// token for the application itself; no refresh token, ID token or
// client_info.
func (s *Server) appTokens(is issue, now, exp, lifetime int64) tokenResponse {
	t := is.tenant
	sp := nameUUID("sp", t.id, is.clientID) // the client's service principal in the tenant
	return tokenResponse{
		TokenType:    "Bearer",
		Scope:        strings.Join(is.scopes, " "),
		ExpiresIn:    lifetime,
		ExtExpiresIn: lifetime,
		AccessToken: s.signer.sign(map[string]any{
			"aud": resourceOf(is.scopes), "iss": t.issuer(), "iat": now, "nbf": now, "exp": exp,
			"azp": is.clientID, "appid": is.clientID, "oid": sp, "sub": sp, "tid": t.id,
			"idtyp": "app", "uti": randomString(16), "ver": "2.0",
		}),
	}
}

// defaultResource is the audience of a token whose scopes name no resource.
const defaultResource = "fakeidp-resource"

// resourceOf returns the audience of an access token: the resource of the
// first scope that names one ("api://x/read" and "api://x/.default" name
// "api://x"), skipping the OpenID Connect scopes.
func resourceOf(scopes []string) string {
	for _, sc := range scopes {
		if oidcScopes[sc] {
			continue
		}
		if i := strings.LastIndex(sc, "/"); i > 0 && !strings.HasSuffix(sc[:i], "/") {
			return sc[:i]
		}
	}
	return defaultResource
}

// oidcScopes are the scopes MSAL adds to every request, and email.
var oidcScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true, "email": true}

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
