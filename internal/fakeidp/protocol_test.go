package fakeidp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// post sends a form to the server and decodes the JSON answer.
func post(t *testing.T, s *Server, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.HTTPClient().PostForm(s.Authority()+path, form)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", resp.Request.URL.Path, ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q", resp.Request.URL.Path, cc)
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", resp.Request.URL.Path, err)
	}
	return resp.StatusCode, body
}

func wantError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["error"] != wantCode {
		t.Errorf("got %d %v, want %d %s", status, body, wantStatus, wantCode)
	}
}

// deviceLogin gets a device code and redeems it without MSAL.
func deviceLogin(t *testing.T, s *Server, clientID, scope string) map[string]any {
	t.Helper()
	status, dc := post(t, s, "/oauth2/v2.0/devicecode", url.Values{"client_id": {clientID}, "scope": {scope}})
	if status != http.StatusOK {
		t.Fatalf("devicecode: %d %v", status, dc)
	}
	status, tok := post(t, s, "/oauth2/v2.0/token", url.Values{
		"grant_type": {"device_code"}, "device_code": {dc["device_code"].(string)},
		"client_id": {clientID}, "scope": {scope}, "client_info": {"1"},
	})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	return tok
}

func jwtClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 || parts[2] == "" {
		t.Fatalf("not a signed JWT: %q", jwt)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestDiscovery(t *testing.T) {
	s := start(t)
	resp, err := s.HTTPClient().Get(s.Authority() + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	status, body := decode(t, resp)
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	for key, want := range map[string]string{
		"issuer":                        s.Authority() + "/v2.0",
		"token_endpoint":                s.Authority() + "/oauth2/v2.0/token",
		"authorization_endpoint":        s.Authority() + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint": s.Authority() + "/oauth2/v2.0/devicecode",
	} {
		if body[key] != want {
			t.Errorf("%s = %v, want %s", key, body[key], want)
		}
	}
	// MSAL's derivation of the device code endpoint must land on ours.
	if got := strings.ReplaceAll(body["token_endpoint"].(string), "token", "devicecode"); got != body["device_authorization_endpoint"] {
		t.Errorf("MSAL would derive %s", got)
	}
}

func TestTokenResponse(t *testing.T) {
	s := start(t, WithTokenLifetime(90*time.Minute))
	s.SetNextUser("erin@contoso.example")
	tok := deviceLogin(t, s, "client-a", "api://x/read openid profile offline_access api://x/read")

	if tok["scope"] != "api://x/read openid profile offline_access" {
		t.Errorf("scope %q", tok["scope"])
	}
	if tok["token_type"] != "Bearer" || tok["expires_in"] != float64(5400) || tok["ext_expires_in"] != float64(5400) {
		t.Errorf("token_type %v, expires_in %v, ext_expires_in %v", tok["token_type"], tok["expires_in"], tok["ext_expires_in"])
	}
	oid := nameUUID("oid", s.TenantID(), "erin@contoso.example")
	id := jwtClaims(t, tok["id_token"].(string))
	for key, want := range map[string]any{
		"aud": "client-a", "iss": s.Authority() + "/v2.0", "oid": oid, "tid": s.TenantID(),
		"preferred_username": "erin@contoso.example", "name": "erin",
	} {
		if id[key] != want {
			t.Errorf("id_token %s = %v, want %v", key, id[key], want)
		}
	}
	if iat, exp := id["iat"].(float64), id["exp"].(float64); exp-iat != 5400 {
		t.Errorf("id_token iat %v exp %v", iat, exp)
	}
	ci, err := base64.RawURLEncoding.DecodeString(tok["client_info"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	if err := json.Unmarshal(ci, &info); err != nil {
		t.Fatal(err)
	}
	if info["uid"] != oid || info["utid"] != s.TenantID() {
		t.Errorf("client_info %v", info)
	}
	if at := jwtClaims(t, tok["access_token"].(string)); at["scp"] != tok["scope"] || at["upn"] != "erin@contoso.example" {
		t.Errorf("access token claims %v", at)
	}

	// Without openid, offline_access and client_info: no id_token, refresh token or client_info.
	status, bare := post(t, s, "/oauth2/v2.0/token", url.Values{
		"grant_type": {"password"}, "username": {"erin@contoso.example"}, "password": {"x"},
		"client_id": {"client-a"}, "scope": {"api://x/read"},
	})
	if status != http.StatusOK {
		t.Fatalf("%d %v", status, bare)
	}
	for _, key := range []string{"id_token", "refresh_token", "client_info"} {
		if _, ok := bare[key]; ok {
			t.Errorf("unrequested %s in %v", key, bare)
		}
	}
}

func TestRefreshTokensAreStableAndAccessTokensUnique(t *testing.T) {
	s := start(t)
	const scope = "api://x/read openid profile offline_access"
	s.SetNextUser("frank@contoso.example")
	first := deviceLogin(t, s, "client-a", scope)
	rt := first["refresh_token"].(string)
	seen := map[string]bool{first["access_token"].(string): true}

	refresh := func(clientID, token, scope string) (int, map[string]any) {
		return post(t, s, "/oauth2/v2.0/token", url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {clientID}, "scope": {scope},
		})
	}
	for i := range 3 {
		status, tok := refresh("client-a", rt, "api://x/other"+strings.Repeat("x", i)+" openid offline_access")
		if status != http.StatusOK {
			t.Fatalf("refresh: %d %v", status, tok)
		}
		if tok["refresh_token"] != rt {
			t.Error("a refresh returned another refresh token")
		}
		if at := tok["access_token"].(string); seen[at] {
			t.Error("an access token was issued twice")
		} else {
			seen[at] = true
		}
	}
	// Logging in again as the same user gives the same refresh token; another
	// client or user gets another one.
	s.SetNextUser("frank@contoso.example")
	if again := deviceLogin(t, s, "client-a", scope); again["refresh_token"] != rt {
		t.Error("a second login of the same user and client got another refresh token")
	}
	s.SetNextUser("frank@contoso.example")
	if other := deviceLogin(t, s, "client-b", scope); other["refresh_token"] == rt {
		t.Error("another client got the same refresh token")
	}
	if other := deviceLogin(t, s, "client-a", scope); other["refresh_token"] == rt {
		t.Error("another user got the same refresh token")
	}

	status, body := refresh("client-a", "fakeidp-rt.unknown", scope)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")
	status, body = refresh("client-b", rt, scope)
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")
}

func TestDeviceCodeErrors(t *testing.T) {
	var now atomic.Pointer[time.Time]
	t0 := time.Now()
	now.Store(&t0)
	s := start(t, WithManualApproval(), withClock(func() time.Time { return *now.Load() }))

	newCode := func() map[string]any {
		status, dc := post(t, s, "/oauth2/v2.0/devicecode", url.Values{"client_id": {"c"}, "scope": {"s openid"}})
		if status != http.StatusOK {
			t.Fatalf("%d %v", status, dc)
		}
		return dc
	}
	poll := func(dc map[string]any, clientID string) (int, map[string]any) {
		return post(t, s, "/oauth2/v2.0/token", url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc["device_code"].(string)},
			"client_id": {clientID}, "scope": {"s openid"},
		})
	}

	dc := newCode()
	if dc["interval"] != float64(1) || dc["expires_in"] != float64(900) {
		t.Errorf("device code response %v", dc)
	}
	status, body := poll(dc, "c")
	wantError(t, status, body, http.StatusBadRequest, "authorization_pending")
	status, body = poll(dc, "other-client")
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant")
	if err := s.Approve(dc["user_code"].(string)); err != nil {
		t.Fatal(err)
	}
	if status, body = poll(dc, "c"); status != http.StatusOK {
		t.Fatalf("approved poll: %d %v", status, body)
	}
	status, body = poll(dc, "c")
	wantError(t, status, body, http.StatusBadRequest, "invalid_grant") // already redeemed

	expiring := newCode()
	later := t0.Add(deviceCodeLifetime)
	now.Store(&later)
	if err := s.Approve(expiring["user_code"].(string)); err == nil {
		t.Error("approving an expired code succeeded")
	}
	if p := s.Pending(); len(p) != 0 {
		t.Errorf("Pending() lists expired codes: %v", p)
	}
	status, body = poll(expiring, "c")
	wantError(t, status, body, http.StatusBadRequest, "expired_token")

	c := s.Requests()
	if c.Pending != 1 || c.Errors != 3 || c.DeviceCodeGrant != 5 || c.TokensIssued != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestBadRequests(t *testing.T) {
	s := start(t)
	base := url.Values{"client_id": {"c"}, "scope": {"s"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	for _, tc := range []struct {
		name, path string
		form       url.Values
		status     int
		code       string
	}{
		{"no grant", "/oauth2/v2.0/token", with(), 400, "invalid_request"},
		{"unknown grant", "/oauth2/v2.0/token", with("grant_type", "implicit"), 400, "unsupported_grant_type"},
		{"no client", "/oauth2/v2.0/token", with("grant_type", "refresh_token", "client_id", ""), 400, "invalid_request"},
		{"no scope", "/oauth2/v2.0/token", with("grant_type", "refresh_token", "scope", ""), 400, "invalid_scope"},
		{"no password", "/oauth2/v2.0/token", with("grant_type", "password", "username", "u@x"), 400, "invalid_request"},
		{"device code, no scope", "/oauth2/v2.0/devicecode", with("scope", ""), 400, "invalid_scope"},
		{"device code, no client", "/oauth2/v2.0/devicecode", with("client_id", ""), 400, "invalid_request"},
		{"unknown path", "/oauth2/v2.0/nothing", with(), 404, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, s, tc.path, tc.form)
			wantError(t, status, body, tc.status, tc.code)
		})
	}

	// Wrong method and wrong content type.
	resp, err := s.HTTPClient().Get(s.Authority() + "/oauth2/v2.0/token")
	if err != nil {
		t.Fatal(err)
	}
	status, body := decode(t, resp)
	wantError(t, status, body, http.StatusMethodNotAllowed, "invalid_request")
	resp, err = s.HTTPClient().Post(s.Authority()+"/oauth2/v2.0/token", "application/json", strings.NewReader(`{"grant_type":"password"}`))
	if err != nil {
		t.Fatal(err)
	}
	status, body = decode(t, resp)
	wantError(t, status, body, http.StatusBadRequest, "invalid_request")
	// An oversized body is refused, not read to the end.
	resp, err = s.HTTPClient().PostForm(s.Authority()+"/oauth2/v2.0/token", url.Values{"client_id": {strings.Repeat("x", maxBody)}})
	if err != nil {
		t.Fatal(err)
	}
	status, body = decode(t, resp)
	wantError(t, status, body, http.StatusBadRequest, "invalid_request")
}

func TestConcurrentClients(t *testing.T) {
	s := start(t, WithManualApproval())
	const n = 50
	var wg sync.WaitGroup
	codes := make(chan string, n)
	for range n {
		wg.Go(func() {
			status, dc := post(t, s, "/oauth2/v2.0/devicecode", url.Values{"client_id": {"c"}, "scope": {"s offline_access"}})
			if status != http.StatusOK {
				t.Errorf("%d %v", status, dc)
				return
			}
			codes <- dc["user_code"].(string)
		})
	}
	wg.Wait()
	close(codes)
	seen := map[string]bool{}
	for c := range codes {
		if seen[c] {
			t.Errorf("user code %s issued twice", c)
		}
		seen[c] = true
		wg.Go(func() {
			if err := s.Approve(c); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := s.Requests().DeviceCode; got != n {
		t.Errorf("DeviceCode = %d, want %d", got, n)
	}
	if p := s.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %v after approving all", p)
	}
}
