package fakeidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// clockSkew is how far a client's clock may be off when its assertion says
// when it becomes valid.
const clockSkew = 5 * time.Minute

// authenticateClient checks the client credential of a token request. A
// request with client_secret or client_assertion must come from a registered
// client and carry its credential; a request without one is from a public
// client, which a registered client ID is not. It answers the request if the
// check fails.
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, t *tenant, form url.Values, clientID string) (confidential, ok bool) {
	secret := form.Get("client_secret")
	assertion := form.Get("client_assertion")
	reg := s.clientByID(clientID)
	fail := func(status int, code, desc string) (bool, bool) {
		s.oauthError(w, r, status, code, desc)
		return false, false
	}
	switch {
	case secret == "" && assertion == "":
		if reg != nil {
			return fail(http.StatusUnauthorized, "invalid_client",
				"the client is confidential: the request must contain client_secret or client_assertion")
		}
		return false, true
	case secret != "" && assertion != "":
		return fail(http.StatusBadRequest, "invalid_request", "send client_secret or client_assertion, not both")
	case reg == nil:
		return fail(http.StatusUnauthorized, "invalid_client", "the client is not registered with this server")
	case secret != "":
		if !reg.secretMatches(secret) {
			return fail(http.StatusUnauthorized, "invalid_client", "invalid client secret")
		}
	default:
		if form.Get("client_assertion_type") != clientAssertionType {
			return fail(http.StatusBadRequest, "invalid_request", "client_assertion_type must be "+clientAssertionType)
		}
		if err := s.verifyClientAssertion(t, reg, assertion); err != nil {
			return fail(http.StatusUnauthorized, "invalid_client", "client assertion: "+err.Error())
		}
	}
	return true, true
}

// verifyClientAssertion checks a client assertion (RFC 7523): signed by the
// key of one of the client's certificates, issued by and about the client,
// for this tenant's token endpoint, and current.
func (s *Server) verifyClientAssertion(t *tenant, c *client, assertion string) error {
	h, claims, signed, sig, err := parseJWT(assertion)
	if err != nil {
		return err
	}
	if len(c.certs) == 0 {
		return errors.New("the client has no registered certificate")
	}
	now := s.cfg.now()
	verified := false
	for _, cert := range c.certs {
		if !thumbprintMatches(h, cert) || now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			continue
		}
		if verifySignature(h.Alg, cert.PublicKey, signed, sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return errors.New("the signature does not verify with a current registered certificate")
	}
	if claimString(claims, "iss") != c.id || claimString(claims, "sub") != c.id {
		return errors.New("iss and sub must be the client ID")
	}
	if !audienceIs(claims, t.tokenEndpoint()) {
		return fmt.Errorf("aud must be the token endpoint %s", t.tokenEndpoint())
	}
	exp, ok := claimTime(claims, "exp")
	if !ok || now.Unix() >= exp {
		return errors.New("the assertion has expired (or has no exp)")
	}
	if nbf, ok := claimTime(claims, "nbf"); ok && nbf > now.Add(clockSkew).Unix() {
		return errors.New("the assertion is not valid yet (nbf)")
	}
	return nil
}

// audienceIs reports whether the aud claim (a string or an array) names aud.
func audienceIs(claims map[string]any, aud string) bool {
	switch v := claims["aud"].(type) {
	case string:
		return v == aud
	case []any:
		for _, a := range v {
			if a == aud {
				return true
			}
		}
	}
	return false
}

// errExpired is the error of verifyAccessToken for an expired token.
var errExpired = errors.New("the token has expired")

// verifyAccessToken checks that token is a token this server issued
// (signature, issuer) and that it is current. It returns the token's claims
// and tenant. Callers check idtyp: "user" or "app" in access tokens, absent
// in ID tokens.
func (s *Server) verifyAccessToken(token string) (map[string]any, *tenant, error) {
	h, claims, signed, sig, err := parseJWT(token)
	if err != nil {
		return nil, nil, err
	}
	if h.Alg != "ES256" || h.Kid != s.signer.kid {
		return nil, nil, errors.New("the token was not signed by this server")
	}
	if err := verifySignature(h.Alg, &s.signer.key.PublicKey, signed, sig); err != nil {
		return nil, nil, errors.New("the token's signature does not verify")
	}
	s.mu.Lock()
	t := s.tenantsByID[claimString(claims, "tid")]
	s.mu.Unlock()
	if t == nil || claimString(claims, "iss") != t.issuer() {
		return nil, nil, errors.New("the token's issuer is not a tenant of this server")
	}
	now := s.cfg.now().Unix()
	if exp, ok := claimTime(claims, "exp"); !ok || now >= exp {
		return nil, nil, errExpired
	}
	if nbf, ok := claimTime(claims, "nbf"); ok && nbf > now {
		return nil, nil, errors.New("the token is not valid yet")
	}
	return claims, t, nil
}

// needConfidential refuses a grant that only confidential clients may use.
func needConfidential(confidential bool, grant string) *oauthErr {
	if confidential {
		return nil
	}
	return &oauthErr{http.StatusUnauthorized, "invalid_client",
		"the " + grant + " grant needs a confidential client: send client_secret or client_assertion"}
}

// defaultScope returns the one "<resource>/.default" scope of a client
// credentials request, without the OpenID Connect scopes MSAL adds.
func defaultScope(scopes []string) ([]string, *oauthErr) {
	var out []string
	for _, sc := range scopes {
		if !oidcScopes[sc] {
			out = append(out, sc)
		}
	}
	if len(out) != 1 || !strings.HasSuffix(out[0], "/.default") || out[0] == "/.default" {
		return nil, &oauthErr{http.StatusBadRequest, "invalid_scope",
			"the client_credentials grant needs exactly one scope of the form <resource>/.default"}
	}
	return out, nil
}

// onBehalfOf checks an on-behalf-of request (a jwt-bearer grant) and
// returns the user it acts for. The assertion must be a current user access
// token that this server issued in t for the calling client: its audience is
// the client ID or api://<client ID>.
func (s *Server) onBehalfOf(t *tenant, form url.Values, clientID string) (string, *oauthErr) {
	if form.Get("requested_token_use") != "on_behalf_of" {
		return "", &oauthErr{http.StatusBadRequest, "invalid_request",
			"the jwt-bearer grant is served for on-behalf-of only: requested_token_use must be on_behalf_of"}
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return "", &oauthErr{http.StatusBadRequest, "invalid_request", "assertion is required"}
	}
	claims, at, err := s.verifyAccessToken(assertion)
	switch {
	case err != nil:
		return "", invalidGrant("the assertion is not a valid access token of this server: " + err.Error())
	case claimString(claims, "idtyp") != "user":
		return "", invalidGrant("the assertion is not a user's access token (an application token or an ID token)")
	case at != t:
		return "", invalidGrant("the assertion was issued in another tenant")
	case !audienceIs(claims, clientID) && !audienceIs(claims, "api://"+clientID):
		return "", invalidGrant("the assertion's audience is not this client (want its client ID or api://<client ID>)")
	}
	return claimString(claims, "upn"), nil
}

// codeLifetime is how long an authorization code may be redeemed.
const codeLifetime = 10 * time.Minute

// authCode is an authorization code waiting to be redeemed.
type authCode struct {
	tenant      *tenant
	clientID    string
	redirectURI string
	username    string
	scopes      []string
	challenge   string // PKCE S256 code challenge
	nonce       string
	expires     time.Time
}

// redeemCode checks an authorization_code request and returns the user and
// the nonce of the authorization request. A code is forgotten at its first
// redemption, successful or not, so it never works twice.
func (s *Server) redeemCode(t *tenant, form url.Values, clientID string) (username, nonce string, e *oauthErr) {
	code := form.Get("code")
	s.mu.Lock()
	ac := s.codes[code]
	delete(s.codes, code)
	now := s.cfg.now()
	s.mu.Unlock()
	switch {
	case code == "":
		return "", "", &oauthErr{http.StatusBadRequest, "invalid_request", "code is required"}
	case ac == nil:
		return "", "", invalidGrant("the authorization code is unknown or was already redeemed")
	case !now.Before(ac.expires):
		return "", "", invalidGrant("the authorization code has expired")
	case ac.clientID != clientID:
		return "", "", invalidGrant("the authorization code was issued to another client")
	case ac.tenant != t:
		return "", "", invalidGrant("the authorization code was issued in another tenant")
	case form.Get("redirect_uri") != ac.redirectURI:
		return "", "", invalidGrant("redirect_uri does not match the authorization request")
	case !pkceMatches(form.Get("code_verifier"), ac.challenge):
		return "", "", invalidGrant("the code_verifier does not match the code_challenge")
	}
	return ac.username, ac.nonce, nil
}

var (
	verifierPattern  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
	challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// pkceMatches checks a code verifier against an S256 challenge (RFC 7636).
func pkceMatches(verifier, challenge string) bool {
	if !verifierPattern.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// sweepCodes forgets expired authorization codes, at most once a code
// lifetime. s.mu must be held.
func (s *Server) sweepCodes(now time.Time) {
	if now.Before(s.nextCodeSweep) {
		return
	}
	s.nextCodeSweep = now.Add(codeLifetime)
	for k, c := range s.codes {
		if !now.Before(c.expires) {
			delete(s.codes, k)
		}
	}
}

// newCode stores an authorization code for a signed-in user and counts it.
func (s *Server) newCode(req authRequest, user User) string {
	code := "fakeidp-ac." + randomString(32)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	s.sweepCodes(now)
	s.codes[code] = &authCode{
		tenant: req.tenant, clientID: req.clientID, redirectURI: req.redirectURI, username: user.Username,
		scopes: slices.Clone(req.scopes), challenge: req.challenge, nonce: req.nonce, expires: now.Add(codeLifetime),
	}
	s.counts.CodesIssued++
	req.tenant.counts.CodesIssued++
	s.countUser(req.tenant, user.Username, func(c *Counts) { c.CodesIssued++ })
	return code
}
