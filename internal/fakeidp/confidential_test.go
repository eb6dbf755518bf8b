package fakeidp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

const (
	webClientID = "0a0a0a0a-1111-4111-8111-000000000001" // a web app
	webSecret   = "web-app-secret"
	apiClientID = "0b0b0b0b-2222-4222-8222-000000000002" // a web API that calls another API on behalf of users
	apiSecret   = "web-api-secret"
	redirectURI = "https://app.example/auth/callback" // never contacted: SignIn returns the redirect
)

var apiScope = []string{"api://" + apiClientID + "/access"}

// newConfidential returns a real MSAL Go confidential client for an
// authority of s.
func newConfidential(t testing.TB, s *Server, authority, clientID string, cred confidential.Credential) confidential.Client {
	t.Helper()
	app, err := confidential.New(authority, clientID, cred, s.ConfidentialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func secretCred(t testing.TB, secret string) confidential.Credential {
	t.Helper()
	cred, err := confidential.NewCredFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// webApp registers the web app client and returns an MSAL client for it on
// the default tenant.
func webApp(t testing.TB, s *Server) confidential.Client {
	t.Helper()
	if err := s.RegisterClient(ConfidentialClient{ID: webClientID, Secret: webSecret, RedirectURIs: []string{redirectURI}}); err != nil {
		t.Fatal(err)
	}
	return newConfidential(t, s, s.Authority(), webClientID, secretCred(t, webSecret))
}

func addUser(t testing.TB, s *Server, tenant, username string) User {
	t.Helper()
	u, err := s.AddUser(tenant, username)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func addTenant(t testing.TB, s *Server, tenant string) string {
	t.Helper()
	a, err := s.AddTenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// claimsOf decodes a JWT's claims after checking that the server signed it.
func claimsOf(t *testing.T, s *Server, jwt string) map[string]any {
	t.Helper()
	h, claims, signed, sig, err := parseJWT(jwt)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySignature(h.Alg, &s.signer.key.PublicKey, signed, sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return claims
}

func TestClientCredentialsPerTenant(t *testing.T) {
	s := start(t)
	authA := addTenant(t, s, "tenant-a")
	addTenant(t, s, "tenant-b")
	const daemonID = "0d0d0d0d-3333-4333-8333-000000000003"
	if err := s.RegisterClient(ConfidentialClient{ID: daemonID, Secret: "daemon-secret"}); err != nil {
		t.Fatal(err)
	}
	app := newConfidential(t, s, authA, daemonID, secretCred(t, "daemon-secret"))
	ctx := testCtx(t)
	scope := []string{"api://downstream/.default"}

	resA, err := app.AcquireTokenByCredential(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	resB, err := app.AcquireTokenByCredential(ctx, scope, confidential.WithTenantID("tenant-b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		res    confidential.AuthResult
		tenant string
	}{{resA, "tenant-a"}, {resB, "tenant-b"}} {
		c := claimsOf(t, s, tc.res.AccessToken)
		want := map[string]any{"tid": tenantID(tc.tenant), "aud": "api://downstream", "appid": daemonID, "idtyp": "app",
			"iss": s.origin + "/" + tc.tenant + "/v2.0"}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("%s token: %s = %v, want %v", tc.tenant, k, c[k], v)
			}
		}
		if _, ok := c["upn"]; ok {
			t.Errorf("%s: an app token names a user: %v", tc.tenant, c)
		}
		got := s.TenantRequests(tc.tenant)
		wantCounts(t, tc.tenant, got, Counts{Discovery: 1, Token: 1, ClientCredentialsGrant: 1, TokensIssued: 1})
	}
	if got, err := s.TenantAuthority("tenant-a"); got != authA || err != nil {
		t.Errorf("TenantAuthority(tenant-a) = %q, %v", got, err)
	}
	if _, err := s.TenantAuthority("tenant-c"); !errors.Is(err, ErrUnknownTenant) {
		t.Errorf("TenantAuthority(tenant-c): %v, want ErrUnknownTenant", err)
	}
	if _, err := s.AddUser("tenant-c", "x@y"); !errors.Is(err, ErrUnknownTenant) {
		t.Errorf("AddUser in an unknown tenant: %v", err)
	}
	if _, err := s.AddTenant("Bad/Tenant"); err == nil {
		t.Error("AddTenant accepted an invalid tenant")
	}
	if resA.AccessToken == resB.AccessToken {
		t.Error("two tenants got the same token")
	}

	// Both tokens are in MSAL's cache now: no request.
	before := s.Requests()
	for _, opts := range [][]confidential.AcquireByCredentialOption{nil, {confidential.WithTenantID("tenant-b")}} {
		res, err := app.AcquireTokenByCredential(ctx, scope, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if res.AccessToken != resA.AccessToken && res.AccessToken != resB.AccessToken {
			t.Error("a cached app token was not served from the cache")
		}
	}
	wantCounts(t, "cached app tokens", s.Requests().Sub(before), Counts{})
	if got := s.TenantRequests(DefaultTenant); got != (Counts{}) {
		t.Errorf("the default tenant saw requests: %+v", got)
	}

	// A tenant the server does not serve.
	if _, err := app.AcquireTokenByCredential(ctx, scope, confidential.WithTenantID("tenant-c")); err == nil {
		t.Error("a token from an unknown tenant")
	}
	// A scope that is not <resource>/.default.
	status, body := postTo(t, s, authA, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {daemonID}, "client_secret": {"daemon-secret"}, "scope": {"api://downstream/read"},
	})
	wantError(t, status, body, http.StatusBadRequest, "invalid_scope")
}

// postTo posts a form to the token endpoint of authority.
func postTo(t *testing.T, s *Server, authority string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.HTTPClient().PostForm(authority+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func TestClientSecretChecks(t *testing.T) {
	s := start(t)
	webApp(t, s)
	ctx := testCtx(t)
	scope := []string{"api://downstream/.default"}

	wrong := newConfidential(t, s, s.Authority(), webClientID, secretCred(t, "not-the-secret"))
	_, err := wrong.AcquireTokenByCredential(ctx, scope)
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("wrong secret: %v, want invalid_client", err)
	}
	if err != nil && strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("the error shows the secret: %v", err)
	}
	unregistered := newConfidential(t, s, s.Authority(), "unregistered-client", secretCred(t, webSecret))
	if _, err := unregistered.AcquireTokenByCredential(ctx, scope); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("unregistered client: %v, want invalid_client", err)
	}

	status, body := post(t, s, "/oauth2/v2.0/devicecode", url.Values{"client_id": {webClientID}, "scope": {"s"}})
	wantError(t, status, body, http.StatusUnauthorized, "invalid_client") // the device code flow is for public clients

	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"registered client, no credential", url.Values{"grant_type": {"client_credentials"}, "client_id": {webClientID}, "scope": {scope[0]}}, 401, "invalid_client"},
		{"registered client, public grant", url.Values{"grant_type": {"password"}, "client_id": {webClientID}, "scope": {"s"}, "username": {"u@x"}, "password": {"p"}}, 401, "invalid_client"},
		{"public client, client credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {"public-client"}, "scope": {scope[0]}}, 401, "invalid_client"},
		{"secret and assertion", url.Values{"grant_type": {"client_credentials"}, "client_id": {webClientID}, "client_secret": {webSecret},
			"client_assertion": {"x"}, "client_assertion_type": {clientAssertionType}, "scope": {scope[0]}}, 400, "invalid_request"},
		{"assertion, client has no certificate", url.Values{"grant_type": {"client_credentials"}, "client_id": {webClientID},
			"client_assertion": {"x.y.z"}, "client_assertion_type": {clientAssertionType}, "scope": {scope[0]}}, 401, "invalid_client"},
		{"right secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {webClientID}, "client_secret": {webSecret}, "scope": {scope[0]}}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postTo(t, s, s.Authority(), tc.form)
			if tc.status == 200 {
				if status != 200 {
					t.Errorf("%d %v", status, body)
				}
				return
			}
			wantError(t, status, body, tc.status, tc.code)
		})
	}
	if err := s.RegisterClient(ConfidentialClient{ID: "no-credential"}); err == nil {
		t.Error("registered a client without a secret or certificate")
	}
	if err := s.RegisterClient(ConfidentialClient{ID: "bad-redirect", Secret: "x", RedirectURIs: []string{"/relative"}}); err == nil {
		t.Error("registered a relative redirect URI")
	}
}

// newRSACert makes an RSA key and a self-signed certificate for it.
func newRSACert(t testing.TB, now time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "daemon"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// rs256 signs claims as a JWT with RS256 and an x5t#S256 header.
func rs256(t *testing.T, key *rsa.PrivateKey, cert *x509.Certificate, claims map[string]any) string {
	t.Helper()
	thumb := sha256.Sum256(cert.Raw)
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "x5t#S256": base64.StdEncoding.EncodeToString(thumb[:])})
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

func TestClientCertificate(t *testing.T) {
	s := start(t)
	const daemonID = "0c0c0c0c-4444-4444-8444-000000000004"
	now := time.Now()
	key, cert := newRSACert(t, now)
	otherKey, otherCert := newRSACert(t, now)
	if err := s.RegisterClient(ConfidentialClient{ID: daemonID, Certificates: []*x509.Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	scope := []string{"api://downstream/.default"}

	cred, err := confidential.NewCredFromCert([]*x509.Certificate{cert}, key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := newConfidential(t, s, s.Authority(), daemonID, cred).AcquireTokenByCredential(ctx, scope)
	if err != nil {
		t.Fatalf("registered certificate (PS256 assertion by MSAL): %v", err)
	}
	if c := claimsOf(t, s, res.AccessToken); c["appid"] != daemonID {
		t.Errorf("claims %v", c)
	}

	otherCred, err := confidential.NewCredFromCert([]*x509.Certificate{otherCert}, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newConfidential(t, s, s.Authority(), daemonID, otherCred).AcquireTokenByCredential(ctx, scope); err == nil ||
		!strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("unregistered certificate: %v, want invalid_client", err)
	}

	// Assertions built by hand (RS256): each defect is refused.
	endpoint := s.Authority() + "/oauth2/v2.0/token"
	good := func() map[string]any {
		return map[string]any{"aud": endpoint, "iss": daemonID, "sub": daemonID, "jti": randomString(8),
			"nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	}
	with := func(k string, v any) map[string]any {
		c := good()
		c[k] = v
		return c
	}
	for _, tc := range []struct {
		name   string
		jwt    string
		status int
	}{
		{"good", rs256(t, key, cert, good()), 200},
		{"other key", rs256(t, otherKey, cert, good()), 401},
		{"wrong audience", rs256(t, key, cert, with("aud", s.origin+"/other/oauth2/v2.0/token")), 401},
		{"wrong issuer", rs256(t, key, cert, with("iss", "someone-else")), 401},
		{"expired", rs256(t, key, cert, with("exp", now.Add(-time.Minute).Unix())), 401},
		{"not yet valid", rs256(t, key, cert, with("nbf", now.Add(time.Hour).Unix())), 401},
		{"tampered", rs256(t, key, cert, good()) + "x", 401},
		{"garbage", "not-a-jwt", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postTo(t, s, s.Authority(), url.Values{
				"grant_type": {"client_credentials"}, "client_id": {daemonID}, "scope": {scope[0]},
				"client_assertion": {tc.jwt}, "client_assertion_type": {clientAssertionType},
			})
			if tc.status == 200 {
				if status != 200 {
					t.Errorf("%d %v", status, body)
				}
				return
			}
			wantError(t, status, body, tc.status, "invalid_client")
		})
	}
}

// authorizeURL is an authorization request of the web app, as MSAL builds it
// plus state, nonce and PKCE (MSAL Go's confidential AuthCodeURL sets none
// of them).
func authorizeURL(t *testing.T, app confidential.Client, scopes []string, state, nonce, challenge string) string {
	t.Helper()
	raw, err := app.AuthCodeURL(testCtx(t), webClientID, redirectURI, scopes)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range map[string]string{"state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"} {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func TestAuthCodeFlow(t *testing.T) {
	s := start(t)
	app := webApp(t, s)
	alice := addUser(t, s, s.Tenant(), "alice@contoso.example")
	ctx := testCtx(t)

	verifier, challenge := NewPKCE()
	back, err := s.SignIn(authorizeURL(t, app, scopeRead, "the-state", "the-nonce", challenge), "Alice@contoso.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Scheme + "://" + back.Host + back.Path; got != redirectURI || back.Query().Get("state") != "the-state" {
		t.Fatalf("redirect %s", back.Redacted())
	}
	res, err := app.AcquireTokenByAuthCode(ctx, back.Query().Get("code"), redirectURI, scopeRead, confidential.WithChallenge(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if res.Account.HomeAccountID != alice.HomeAccountID || res.Account.PreferredUsername != "alice@contoso.example" {
		t.Errorf("account %+v, want %+v", res.Account, alice)
	}
	if claimsOf(t, s, res.IDToken.RawToken)["nonce"] != "the-nonce" || res.IDToken.Audience != webClientID {
		t.Errorf("id token %+v", res.IDToken)
	}
	if c := claimsOf(t, s, res.AccessToken); c["upn"] != "alice@contoso.example" || c["azp"] != webClientID || c["aud"] != "api://fakeidp" {
		t.Errorf("access token %v", c)
	}
	wantCounts(t, "sign-in", s.Requests(), Counts{Discovery: 1, Authorize: 1, CodesIssued: 1, Token: 1, AuthorizationCodeGrant: 1, TokensIssued: 1})

	// The same scope: from MSAL's cache; a new scope: the refresh token.
	before := s.Requests()
	hit, err := app.AcquireTokenSilent(ctx, scopeRead, confidential.WithSilentAccount(res.Account))
	if err != nil || hit.AccessToken != res.AccessToken {
		t.Fatalf("silent, cached: %v (same token: %v)", err, hit.AccessToken == res.AccessToken)
	}
	wantCounts(t, "silent, cached", s.Requests().Sub(before), Counts{})
	fresh, err := app.AcquireTokenSilent(ctx, scopeWrite, confidential.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == res.AccessToken || fresh.Account.HomeAccountID != alice.HomeAccountID {
		t.Error("silent, new scope: not a new token for alice")
	}
	wantCounts(t, "silent, new scope", s.Requests().Sub(before), Counts{Token: 1, RefreshTokenGrant: 1, TokensIssued: 1})
	wantCounts(t, "alice", s.UserRequests(s.Tenant(), "ALICE@contoso.example"),
		Counts{CodesIssued: 1, Token: 2, AuthorizationCodeGrant: 1, RefreshTokenGrant: 1, TokensIssued: 2})

	// The helper does the same in one call.
	bob := addUser(t, s, s.Tenant(), "bob@contoso.example")
	res, err = s.AuthCodeLogin(ctx, app, webClientID, redirectURI, "bob@contoso.example", scopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if res.Account.HomeAccountID != bob.HomeAccountID {
		t.Errorf("AuthCodeLogin: account %q, want %q", res.Account.HomeAccountID, bob.HomeAccountID)
	}
	for _, u := range []User{alice, bob} {
		if acc, err := app.Account(ctx, u.HomeAccountID); err != nil || acc.PreferredUsername != u.Username {
			t.Errorf("Account(%s) = %+v, %v", u.Username, acc, err)
		}
	}
}

func TestAuthCodeSecurity(t *testing.T) {
	s := start(t)
	app := webApp(t, s)
	addUser(t, s, s.Tenant(), "alice@contoso.example")
	const otherID = "0e0e0e0e-5555-4555-8555-000000000005"
	if err := s.RegisterClient(ConfidentialClient{ID: otherID, Secret: "other-secret", RedirectURIs: []string{redirectURI}}); err != nil {
		t.Fatal(err)
	}

	// newCode signs alice in and returns a fresh code and its verifier.
	newCode := func() (code, verifier string) {
		t.Helper()
		verifier, challenge := NewPKCE()
		back, err := s.SignIn(authorizeURL(t, app, scopeRead, "st", "", challenge), "alice@contoso.example")
		if err != nil {
			t.Fatal(err)
		}
		return back.Query().Get("code"), verifier
	}
	redeem := func(code, verifier, redirect, clientID, secret string) (int, map[string]any) {
		t.Helper()
		return postTo(t, s, s.Authority(), url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect},
			"client_id": {clientID}, "client_secret": {secret}, "scope": {"api://fakeidp/read openid offline_access profile"},
			"client_info": {"1"},
		})
	}
	wrongVerifier, _ := NewPKCE()

	code, verifier := newCode()
	status, body := redeem(code, verifier, redirectURI, webClientID, "wrong-secret")
	wantError(t, status, body, http.StatusUnauthorized, "invalid_client")
	status, body = redeem(code, wrongVerifier, redirectURI, webClientID, webSecret)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")
	status, body = redeem(code, verifier, redirectURI, webClientID, webSecret) // a failed redemption used the code up
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")

	code, verifier = newCode()
	status, body = redeem(code, verifier, redirectURI+"/other", webClientID, webSecret)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")

	code, _ = newCode()
	status, body = redeem(code, "", redirectURI, webClientID, webSecret)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")

	code, verifier = newCode()
	status, body = redeem(code, verifier, redirectURI, otherID, "other-secret")
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")

	code, verifier = newCode()
	if status, body = redeem(code, verifier, redirectURI, webClientID, webSecret); status != http.StatusOK {
		t.Fatalf("a good redemption: %d %v", status, body)
	}
	status, body = redeem(code, verifier, redirectURI, webClientID, webSecret)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")

	// With MSAL: a reused code and a wrong verifier are errors.
	ctx := testCtx(t)
	if _, err := app.AcquireTokenByAuthCode(ctx, code, redirectURI, scopeRead, confidential.WithChallenge(verifier)); err == nil {
		t.Error("MSAL redeemed a code twice")
	}
	code, _ = newCode()
	if _, err := app.AcquireTokenByAuthCode(ctx, code, redirectURI, scopeRead, confidential.WithChallenge(wrongVerifier)); err == nil {
		t.Error("MSAL redeemed a code with the wrong verifier")
	}

	// Sign-in refusals issue no code.
	_, challenge := NewPKCE()
	before := s.Requests()
	good := authorizeURL(t, app, scopeRead, "st", "n", challenge)
	edit := func(k, v string) string {
		u, _ := url.Parse(good)
		q := u.Query()
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for name, tc := range map[string]struct{ url, user string }{
		"unknown user":          {good, "mallory@contoso.example"},
		"empty user":            {good, " "},
		"unregistered redirect": {edit("redirect_uri", "https://evil.example/cb"), "alice@contoso.example"},
		"unknown client":        {edit("client_id", "nobody"), "alice@contoso.example"},
		"no PKCE":               {edit("code_challenge", ""), "alice@contoso.example"},
		"plain PKCE":            {edit("code_challenge_method", "plain"), "alice@contoso.example"},
		"short challenge":       {edit("code_challenge", "abc"), "alice@contoso.example"},
		"token response type":   {edit("response_type", "token"), "alice@contoso.example"},
		"form_post mode":        {edit("response_mode", "form_post"), "alice@contoso.example"},
		"no scope":              {edit("scope", ""), "alice@contoso.example"},
		"another server":        {strings.Replace(good, s.origin, "https://login.example", 1), "alice@contoso.example"},
		"unknown tenant":        {strings.Replace(good, "/"+s.Tenant()+"/", "/no-such-tenant/", 1), "alice@contoso.example"},
	} {
		if back, err := s.SignIn(tc.url, tc.user); err == nil {
			t.Errorf("%s: SignIn succeeded: %s", name, back.Redacted())
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Eleven refusals; the URL of another server never reached this one.
	if d := s.Requests().Sub(before); d.CodesIssued != 0 || d.Errors != 11 || d.Authorize != 10 {
		t.Errorf("refused sign-ins: %+v", d)
	}
}

func TestConfidentialRefresh(t *testing.T) {
	s := start(t)
	app := webApp(t, s)
	addUser(t, s, s.Tenant(), "alice@contoso.example")
	authB := addTenant(t, s, "tenant-b")
	ctx := testCtx(t)

	// Tokens that expire within MSAL's five-minute margin are refreshed by
	// every silent call.
	s.SetTokenLifetime(time.Minute)
	res, err := s.AuthCodeLogin(ctx, app, webClientID, redirectURI, "alice@contoso.example", scopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(res.ExpiresOn); d > time.Minute || d < 30*time.Second {
		t.Errorf("ExpiresOn in %v, want about a minute", d)
	}
	before := s.Requests()
	seen := map[string]bool{res.AccessToken: true}
	for range 3 {
		r, err := app.AcquireTokenSilent(ctx, scopeRead, confidential.WithSilentAccount(res.Account))
		if err != nil {
			t.Fatal(err)
		}
		if seen[r.AccessToken] {
			t.Error("an expired token was served")
		}
		seen[r.AccessToken] = true
	}
	wantCounts(t, "three silent calls", s.Requests().Sub(before), Counts{Token: 3, RefreshTokenGrant: 3, TokensIssued: 3})

	// Back to an hour: the next refresh is cached.
	s.SetTokenLifetime(time.Hour)
	if _, err := app.AcquireTokenSilent(ctx, scopeRead, confidential.WithSilentAccount(res.Account)); err != nil {
		t.Fatal(err)
	}
	before = s.Requests()
	if _, err := app.AcquireTokenSilent(ctx, scopeRead, confidential.WithSilentAccount(res.Account)); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, "after an hour-long token", s.Requests().Sub(before), Counts{})

	// The refresh token is bound to the client, its credential and the tenant.
	tok := rawLogin(t, s, "alice@contoso.example")
	rt := tok["refresh_token"].(string)
	refresh := func(authority, clientID, secret string) (int, map[string]any) {
		return postTo(t, s, authority, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
			"client_id": {clientID}, "client_secret": {secret}, "scope": {"api://fakeidp/read offline_access"}})
	}
	status, body := refresh(s.Authority(), webClientID, "")
	wantError(t, status, body, http.StatusUnauthorized, "invalid_client")
	status, body = refresh(s.Authority(), webClientID, "wrong")
	wantError(t, status, body, http.StatusUnauthorized, "invalid_client")
	status, body = refresh(authB, webClientID, webSecret)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")
	status, body = refresh(s.Authority(), "public-client", "")
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")
	if status, body = refresh(s.Authority(), webClientID, webSecret); status != http.StatusOK || body["refresh_token"] != rt {
		t.Errorf("a good refresh: %d %v", status, body)
	}
}

// rawLogin runs the authorization code flow for the web app without MSAL
// and returns the token response.
func rawLogin(t *testing.T, s *Server, username string) map[string]any {
	t.Helper()
	verifier, challenge := NewPKCE()
	q := url.Values{"client_id": {webClientID}, "response_type": {"code"}, "redirect_uri": {redirectURI},
		"scope": {"api://fakeidp/read openid offline_access profile"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	back, err := s.SignIn(s.Authority()+authorizePath+"?"+q.Encode(), username)
	if err != nil {
		t.Fatal(err)
	}
	status, tok := postTo(t, s, s.Authority(), url.Values{
		"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "code_verifier": {verifier},
		"redirect_uri": {redirectURI}, "client_id": {webClientID}, "client_secret": {webSecret},
		"scope": {"api://fakeidp/read openid offline_access profile"}, "client_info": {"1"},
	})
	if status != http.StatusOK {
		t.Fatalf("%d %v", status, tok)
	}
	return tok
}

func TestOnBehalfOf(t *testing.T) {
	s := start(t)
	web := webApp(t, s)
	if err := s.RegisterClient(ConfidentialClient{ID: apiClientID, Secret: apiSecret, RedirectURIs: []string{redirectURI}}); err != nil {
		t.Fatal(err)
	}
	api := newConfidential(t, s, s.Authority(), apiClientID, secretCred(t, apiSecret))
	addUser(t, s, s.Tenant(), "alice@contoso.example")
	ctx := testCtx(t)

	// The web app signs alice in for the web API; the web API calls the me
	// API on her behalf.
	res, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, "alice@contoso.example", apiScope)
	if err != nil {
		t.Fatal(err)
	}
	before := s.Requests()
	obo, err := api.AcquireTokenOnBehalfOf(ctx, res.AccessToken, []string{MeScope})
	if err != nil {
		t.Fatal(err)
	}
	c := claimsOf(t, s, obo.AccessToken)
	if c["upn"] != "alice@contoso.example" || c["azp"] != apiClientID || c["aud"] != MeResource {
		t.Errorf("on-behalf-of token %v", c)
	}
	// The same assertion again: MSAL's on-behalf-of cache.
	again, err := api.AcquireTokenOnBehalfOf(ctx, res.AccessToken, []string{MeScope})
	if err != nil || again.AccessToken != obo.AccessToken {
		t.Errorf("second on-behalf-of call: %v (cached: %v)", err, again.AccessToken == obo.AccessToken)
	}
	// The web API's first request: its discovery.
	wantCounts(t, "on-behalf-of", s.Requests().Sub(before), Counts{Discovery: 1, Token: 1, OnBehalfOfGrant: 1, TokensIssued: 1})
	if got := s.UserRequests(s.Tenant(), "alice@contoso.example").OnBehalfOfGrant; got != 1 {
		t.Errorf("alice's on-behalf-of count %d", got)
	}

	// Refused assertions.
	forOther, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, "alice@contoso.example", []string{"api://other-api/access"})
	if err != nil {
		t.Fatal(err)
	}
	appToken, err := api.AcquireTokenByCredential(ctx, []string{"api://" + apiClientID + "/.default"})
	if err != nil {
		t.Fatal(err)
	}
	// An ID token whose audience is the web API itself (it signed alice in).
	own, err := s.AuthCodeLogin(ctx, api, apiClientID, redirectURI, "alice@contoso.example", scopeRead)
	if err != nil {
		t.Fatal(err)
	}
	expired := resignedWith(t, s, res.AccessToken, "exp", float64(time.Now().Add(-time.Minute).Unix()))
	for name, assertion := range map[string]string{
		"token for another API": forOther.AccessToken,
		"application token":     appToken.AccessToken,
		"ID token":              res.IDToken.RawToken,
		"ID token for the API":  own.IDToken.RawToken,
		"expired token":         expired,
		"unsigned token":        unsignedCopy(t, res.AccessToken),
		"garbage":               "garbage",
	} {
		if _, err := api.AcquireTokenOnBehalfOf(ctx, assertion, []string{MeScope}); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("%s: %v, want invalid_grant", name, err)
		}
	}
	status, body := postTo(t, s, s.Authority(), url.Values{"grant_type": {grantJWTBearer}, "client_id": {apiClientID},
		"client_secret": {apiSecret}, "assertion": {res.AccessToken}, "scope": {MeScope}})
	wantError(t, status, body, http.StatusBadRequest, "invalid_request") // no requested_token_use
	status, body = postTo(t, s, s.Authority(), url.Values{"grant_type": {grantJWTBearer}, "client_id": {apiClientID},
		"assertion": {res.AccessToken}, "requested_token_use": {"on_behalf_of"}, "scope": {MeScope}})
	wantError(t, status, body, http.StatusUnauthorized, "invalid_client") // no credential
}

// resignedWith returns tok with one claim changed, signed again by s (a
// token the server could have issued).
func resignedWith(t *testing.T, s *Server, tok, claim string, v any) string {
	t.Helper()
	_, claims, _, _, err := parseJWT(tok)
	if err != nil {
		t.Fatal(err)
	}
	claims[claim] = v
	return s.signer.sign(claims)
}

// unsignedCopy returns tok with "alg":"none" and no signature.
func unsignedCopy(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
}

// TestConfidentialConcurrent signs users in and gets app tokens for several
// tenants from goroutines sharing one MSAL client per app, as a web app and
// a daemon do.
func TestConfidentialConcurrent(t *testing.T) {
	s := start(t)
	web := webApp(t, s)
	const users, tenants, workers = 100, 8, 16
	names := make([]string, users)
	for i := range names {
		names[i] = fmt.Sprintf("user%03d@contoso.example", i)
		addUser(t, s, s.Tenant(), names[i])
	}
	for i := range tenants {
		addTenant(t, s, fmt.Sprintf("tenant-%d", i))
	}
	const daemonID = "0f0f0f0f-6666-4666-8666-000000000006"
	if err := s.RegisterClient(ConfidentialClient{ID: daemonID, Secret: "daemon-secret"}); err != nil {
		t.Fatal(err)
	}
	daemon := newConfidential(t, s, s.Authority(), daemonID, secretCred(t, "daemon-secret"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		homes = map[string]bool{}
	)
	jobs := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				res, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, names[i], scopeRead)
				if err != nil {
					t.Error(err)
					continue
				}
				tenant := fmt.Sprintf("tenant-%d", i%tenants)
				app, err := daemon.AcquireTokenByCredential(ctx, []string{"api://downstream/.default"}, confidential.WithTenantID(tenant))
				if err != nil {
					t.Error(err)
					continue
				}
				if c := claimsOf(t, s, app.AccessToken); c["tid"] != tenantID(tenant) {
					t.Errorf("%s: app token of tenant %v", tenant, c["tid"])
				}
				mu.Lock()
				homes[res.Account.HomeAccountID] = true
				mu.Unlock()
			}
		})
	}
	for i := range users {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if len(homes) != users {
		t.Errorf("%d distinct accounts, want %d", len(homes), users)
	}
	c := s.Requests()
	if c.CodesIssued != users || c.AuthorizationCodeGrant != users || c.Errors != 0 {
		t.Errorf("counts %+v", c)
	}
	// MSAL's shared client may miss its own cache under concurrency, so a
	// tenant can get more than one token, but every tenant got one.
	for i := range tenants {
		if n := s.TenantRequests(fmt.Sprintf("tenant-%d", i)).ClientCredentialsGrant; n < 1 {
			t.Errorf("tenant-%d: %d client credentials requests", i, n)
		}
	}
	t.Logf("client credentials requests for %d tenants and %d calls: %d", tenants, users, c.ClientCredentialsGrant)
}
