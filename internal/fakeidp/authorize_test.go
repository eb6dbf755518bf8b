package fakeidp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// noRedirects is the server's HTTP client without following redirects.
func noRedirects(s *Server) *http.Client {
	c := *s.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func readPage(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAuthorizeEndpoint drives the sign-in form over HTTP, as a browser (or
// a load test) does: GET the page, POST the form.
func TestAuthorizeEndpoint(t *testing.T) {
	s := start(t)
	webApp(t, s)
	alice := addUser(t, s, s.Tenant(), "alice@contoso.example")
	hc := noRedirects(s)
	endpoint := s.Authority() + authorizePath
	_, challenge := NewPKCE()
	params := url.Values{"client_id": {webClientID}, "response_type": {"code"}, "redirect_uri": {redirectURI},
		"scope": {"api://fakeidp/read openid"}, "state": {`s<"&>`}, "nonce": {"n1"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "login_hint": {`<img src=x onerror=alert(1)>`}}

	resp, err := hc.Get(endpoint + "?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page := readPage(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET: %d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{`<form method="post" action="` + endpoint + `"`, `name="username"`, `type="submit"`,
		`value="s&lt;&#34;&amp;&gt;"`, `value="&lt;img src=x onerror=alert(1)&gt;"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<img") || strings.Contains(page, `s<"`) {
		t.Errorf("an unescaped value on the page:\n%s", page)
	}

	// The form's POST: its hidden fields plus the username.
	form := url.Values{}
	for k, v := range params {
		if k != "login_hint" {
			form[k] = v
		}
	}
	form.Set("username", "alice@contoso.example")
	resp, err = hc.PostForm(endpoint, form)
	if err != nil {
		t.Fatal(err)
	}
	readPage(t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Scheme+"://"+loc.Host+loc.Path != redirectURI || loc.Query().Get("state") != `s<"&>` || loc.Query().Get("code") == "" {
		t.Errorf("redirect %s", loc.Redacted())
	}
	if got := s.UserRequests(s.Tenant(), alice.Username).CodesIssued; got != 1 {
		t.Errorf("alice's codes %d", got)
	}

	// Refusals: an error page where the client or redirect URI cannot be
	// trusted, an error redirect (with the state) otherwise.
	with := func(k, v string) url.Values {
		q := url.Values{}
		for kk, vv := range form {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return q
	}
	for _, tc := range []struct {
		name      string
		form      url.Values
		status    int
		errorCode string // in the redirect
		onPage    string
	}{
		{"unknown user", with("username", "mallory@contoso.example"), 400, "", "no account &#34;mallory@contoso.example&#34;"},
		{"unregistered redirect", with("redirect_uri", "https://evil.example/cb"), 400, "", "redirect_uri is not registered"},
		{"no client", with("client_id", ""), 400, "", "client_id is required"},
		{"no PKCE", with("code_challenge", ""), 303, "invalid_request", ""},
		{"implicit flow", with("response_type", "token"), 303, "unsupported_response_type", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Requests()
			resp, err := hc.PostForm(endpoint, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			page := readPage(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d:\n%s", resp.StatusCode, tc.status, page)
			}
			if tc.errorCode != "" {
				loc, _ := url.Parse(resp.Header.Get("Location"))
				q := loc.Query()
				if !strings.HasPrefix(loc.String(), redirectURI+"?") || q.Get("error") != tc.errorCode || q.Get("state") != `s<"&>` || q.Get("code") != "" {
					t.Errorf("redirect %s", loc)
				}
			} else if !strings.Contains(page, tc.onPage) {
				t.Errorf("the page lacks %q:\n%s", tc.onPage, page)
			}
			if d := s.Requests().Sub(before); d.CodesIssued != 0 || d.Errors != 1 {
				t.Errorf("counts %+v", d)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPut, endpoint, nil)
	if resp, err := hc.Do(req); err != nil {
		t.Fatal(err)
	} else if readPage(t, resp); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", resp.StatusCode)
	}
}

// getMe calls the me endpoint with a bearer token ("" for none).
func getMe(t *testing.T, s *Server, token string) (int, Me, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.MeURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me Me
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&me); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, me, resp.Header
}

func TestMeEndpoint(t *testing.T) {
	var now atomic.Pointer[time.Time]
	t0 := time.Now()
	now.Store(&t0)
	s := start(t, withClock(func() time.Time { return *now.Load() }))
	web := webApp(t, s)
	alice := addUser(t, s, s.Tenant(), "alice@contoso.example")
	ctx := testCtx(t)

	res, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, alice.Username, []string{MeScope})
	if err != nil {
		t.Fatal(err)
	}
	status, me, _ := getMe(t, s, res.AccessToken)
	if status != http.StatusOK {
		t.Fatalf("me: %d", status)
	}
	want := Me{Name: "alice", Username: alice.Username, ObjectID: alice.ObjectID, TenantID: alice.TenantID,
		ExpiresAt: time.Unix(t0.Add(time.Hour).Unix(), 0).UTC()}
	if me != want || !near(me.ExpiresAt, res.ExpiresOn) {
		t.Errorf("me = %+v, want %+v (MSAL's ExpiresOn %v)", me, want, res.ExpiresOn)
	}

	other, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, alice.Username, scopeRead) // api://fakeidp/read
	if err != nil {
		t.Fatal(err)
	}
	// The me scope, but for another API first: the token's audience is that API.
	otherAPI, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, alice.Username, []string{"api://other/read", MeScope})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterClient(ConfidentialClient{ID: "daemon", Secret: "daemon-secret"}); err != nil {
		t.Fatal(err)
	}
	app, err := newConfidential(t, s, s.Authority(), "daemon", secretCred(t, "daemon-secret")).
		AcquireTokenByCredential(ctx, []string{MeResource + "/.default"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"no token":      "",
		"wrong scope":   other.AccessToken,
		"other API":     otherAPI.AccessToken,
		"app token":     app.AccessToken,
		"ID token":      res.IDToken.RawToken,
		"tampered":      res.AccessToken[:len(res.AccessToken)-4] + "AAAA",
		"unsigned":      unsignedCopy(t, res.AccessToken),
		"other server":  otherServerToken(t),
		"not a bearer ": "x",
	} {
		status, _, h := getMe(t, s, tok)
		if status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: %d %q", name, status, h.Get("WWW-Authenticate"))
		}
	}

	// An hour later the token has expired.
	later := t0.Add(time.Hour)
	now.Store(&later)
	if status, _, h := getMe(t, s, res.AccessToken); status != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("expired token: %d %q", status, h.Get("WWW-Authenticate"))
	}
	if c := s.UserRequests(s.Tenant(), alice.Username); c.Me != 1 {
		t.Errorf("alice's me calls: %d", c.Me)
	}
	if c := s.Requests(); c.Me != 11 || c.Errors != 10 {
		t.Errorf("counts %+v", c)
	}
}

// otherServerToken is a token for the me API from another server.
func otherServerToken(t *testing.T) string {
	t.Helper()
	s := start(t)
	webApp(t, s)
	addUser(t, s, s.Tenant(), "alice@contoso.example")
	ctx := testCtx(t)
	app := newConfidential(t, s, s.Authority(), webClientID, secretCred(t, webSecret))
	res, err := s.AuthCodeLogin(ctx, app, webClientID, redirectURI, "alice@contoso.example", []string{MeScope})
	if err != nil {
		t.Fatal(err)
	}
	return res.AccessToken
}

// TestMeWithMSAL is what the web app does: a silent call for the me scope,
// then the API.
func TestMeWithMSAL(t *testing.T) {
	s := start(t)
	web := webApp(t, s)
	addUser(t, s, s.Tenant(), "bob@contoso.example")
	ctx := testCtx(t)
	res, err := s.AuthCodeLogin(ctx, web, webClientID, redirectURI, "bob@contoso.example", scopeRead)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := web.AcquireTokenSilent(ctx, []string{MeScope}, confidential.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatal(err)
	}
	status, me, _ := getMe(t, s, tok.AccessToken)
	if status != http.StatusOK || me.Username != "bob@contoso.example" || !near(me.ExpiresAt, tok.ExpiresOn) {
		t.Errorf("me: %d %+v (token expires %v)", status, me, tok.ExpiresOn)
	}
}

// near reports whether the server's expiry (whole seconds) and MSAL's
// (computed from expires_in when the answer arrived) agree.
func near(a, b time.Time) bool { return a.Sub(b).Abs() < 5*time.Second }
