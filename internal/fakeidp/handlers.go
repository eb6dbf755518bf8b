package fakeidp

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// maxBody bounds a request body; MSAL's forms are a few hundred bytes.
const maxBody = 64 << 10

// Grant types accepted by the token endpoint. MSAL Go sends the short
// "device_code"; RFC 8628 names the URN.
const (
	grantDeviceCode        = "device_code"
	grantDeviceCodeURN     = "urn:ietf:params:oauth:grant-type:device_code"
	grantRefreshToken      = "refresh_token"
	grantPassword          = "password"
	grantAuthorizationCode = "authorization_code"
	grantClientCredentials = "client_credentials"
	grantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// clientAssertionType is the only client_assertion_type (RFC 7523).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{tenant}/v2.0/.well-known/openid-configuration", s.inTenant(s.handleDiscovery))
	mux.HandleFunc("/{tenant}/discovery/v2.0/keys", s.inTenant(s.handleKeys))
	mux.HandleFunc("/{tenant}/oauth2/v2.0/devicecode", s.inTenant(s.handleDeviceCode))
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", s.inTenant(s.handleToken))
	mux.HandleFunc("/{tenant}/oauth2/v2.0/authorize", s.inTenant(s.handleAuthorize))
	mux.HandleFunc("/{tenant}/device", s.inTenant(s.handleDevicePage))
	mux.HandleFunc("/common/UserRealm/{username}", s.handleUserRealm)
	mux.HandleFunc(mePath, s.handleMe)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		discardBody(r)
		s.oauthError(w, r, http.StatusNotFound, "invalid_request", "fakeidp serves no such path")
	})
	return s.logRequests(mux)
}

// statusRecorder remembers the status code for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.handlers.Add(1) // under s.mu, so never concurrent with Close's Wait
		}
		s.mu.Unlock()
		if closed {
			http.Error(w, "fakeidp: server closed", http.StatusServiceUnavailable)
			return
		}
		defer s.handlers.Done()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.cfg.logger.Debug("fakeidp: request", "method", r.Method, "path", r.URL.Path,
			"grant_type", r.PostForm.Get("grant_type"), "status", rec.status, "duration", time.Since(start))
	})
}

// inTenant resolves the {tenant} path segment for h, and answers a request
// for a tenant the server does not serve as Microsoft's identity platform
// does (400 invalid_request).
func (s *Server) inTenant(h func(http.ResponseWriter, *http.Request, *tenant)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := s.tenantByName(r.PathValue("tenant"))
		if t == nil {
			discardBody(r)
			s.oauthError(w, r, http.StatusBadRequest, "invalid_request", "tenant not found: this server serves no such tenant")
			return
		}
		h(w, r, t)
	}
}

// allow answers 405 unless r uses method.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	discardBody(r)
	w.Header().Set("Allow", method)
	s.oauthError(w, r, http.StatusMethodNotAllowed, "invalid_request", "use "+method)
	return false
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.count(t, func(c *Counts) { c.Discovery++ })
	if !s.allow(w, r, http.MethodGet) {
		return
	}
	a := t.authority
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                        t.issuer(),
		"authorization_endpoint":        a + "/oauth2/v2.0/authorize",
		"token_endpoint":                t.tokenEndpoint(),
		"device_authorization_endpoint": a + "/oauth2/v2.0/devicecode",
		"jwks_uri":                      a + "/discovery/v2.0/keys",
		"response_types_supported":      []string{"code"},
		"response_modes_supported":      []string{"query"},
		"grant_types_supported": []string{grantAuthorizationCode, grantClientCredentials, grantRefreshToken,
			grantJWTBearer, grantDeviceCodeURN, grantPassword},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"tenant_region_scope":                   nil,
		"cloud_instance_name":                   strings.TrimPrefix(s.origin, "https://"),
	})
}

// handleKeys serves the public key that signs every token (a JWK set).
func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.count(t, func(c *Counts) { c.Discovery++ })
	if !s.allow(w, r, http.MethodGet) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{s.signer.jwk()}})
}

func (s *Server) handleUserRealm(w http.ResponseWriter, r *http.Request) {
	s.count(nil, func(c *Counts) { c.UserRealm++ })
	if !s.allow(w, r, http.MethodGet) {
		return
	}
	username := r.PathValue("username")
	_, domain, ok := strings.Cut(username, "@")
	if !ok || domain == "" {
		domain = UserDomain
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"ver":                 "1.0",
		"account_type":        "Managed",
		"domain_name":         domain,
		"cloud_instance_name": strings.TrimPrefix(s.origin, "https://"),
		"cloud_audience_urn":  "urn:fakeidp",
	})
}

func (s *Server) handleDevicePage(w http.ResponseWriter, r *http.Request, _ *tenant) {
	discardBody(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "This is fakeidp, a local test identity provider. Device codes are approved")
	fmt.Fprintln(w, "by the program that runs it, not on this page.")
}

func (s *Server) handleDeviceCode(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.count(t, func(c *Counts) { c.DeviceCode++ })
	if !s.allow(w, r, http.MethodPost) {
		return
	}
	form, ok := s.parseForm(w, r)
	if !ok {
		return
	}
	clientID, _, ok := s.clientAndScopes(w, r, form, true)
	if !ok {
		return
	}
	if s.clientByID(clientID) != nil {
		s.oauthError(w, r, http.StatusUnauthorized, "invalid_client",
			"the device code flow is for public clients; this client ID is registered as a confidential client")
		return
	}

	d := &deviceAuth{deviceCode: "fakeidp-dc." + randomString(24), tenant: t, clientID: clientID}
	s.mu.Lock()
	now := s.cfg.now()
	s.sweepExpired(now)
	d.expires = now.Add(deviceCodeLifetime)
	d.username = s.nextUser
	s.nextUser = ""
	if d.username == "" {
		s.generated++
		d.username = fmt.Sprintf("user%d@%s", s.generated, UserDomain)
	}
	for {
		d.userCode = newUserCode()
		if _, taken := s.userCodes[d.userCode]; !taken {
			break
		}
	}
	if s.cfg.manualApproval {
		s.issued = append(s.issued, d)
	} else {
		d.approved = true
	}
	s.devices[d.deviceCode] = d
	s.userCodes[d.userCode] = d
	s.mu.Unlock()

	verify := t.authority + "/device"
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":      d.deviceCode,
		"user_code":        d.userCode,
		"verification_uri": verify,
		"expires_in":       int(deviceCodeLifetime / time.Second),
		"interval":         1,
		"message":          fmt.Sprintf("To sign in, use a web browser to open the page %s and enter the code %s to authenticate.", verify, d.userCode),
	})
}

// sweepExpired forgets expired device codes. s.mu must be held.
func (s *Server) sweepExpired(now time.Time) {
	for _, d := range s.devices {
		if !now.Before(d.expires) {
			s.forget(d) // deleting during range is allowed
		}
	}
}

// forget removes d from every index. s.mu must be held.
func (s *Server) forget(d *deviceAuth) {
	delete(s.devices, d.deviceCode)
	delete(s.userCodes, d.userCode)
	s.dropIssued(d)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, t *tenant) {
	if r.Method != http.MethodPost {
		s.count(t, func(c *Counts) { c.Token++; c.OtherGrant++ })
		s.allow(w, r, http.MethodPost)
		return
	}
	form, parsed := s.parseForm(w, r)
	grant := form.Get("grant_type")
	s.count(t, func(c *Counts) { c.Token++; countGrant(c, grant) })
	if !parsed {
		return
	}
	clientID, scopes, ok := s.clientAndScopes(w, r, form, grant != "")
	if !ok {
		return
	}
	confidential, ok := s.authenticateClient(w, r, t, form, clientID)
	if !ok {
		return
	}

	is := issue{tenant: t, clientID: clientID, grant: grant, scopes: scopes, clientInfo: form.Get("client_info") == "1"}
	var e *oauthErr
	switch grant {
	case grantDeviceCode, grantDeviceCodeURN:
		is.username, e = s.redeemDeviceCode(t, form.Get("device_code"), clientID)
	case grantRefreshToken:
		is.username, e = s.redeemRefreshToken(t, form.Get("refresh_token"), clientID)
	case grantPassword:
		is.username = form.Get("username")
		if is.username == "" || form.Get("password") == "" {
			e = &oauthErr{http.StatusBadRequest, "invalid_request", "username and password are required"}
		}
	case grantAuthorizationCode:
		is.username, is.nonce, e = s.redeemCode(t, form, clientID)
	case grantClientCredentials:
		e = needConfidential(confidential, grant)
		if e == nil {
			is.scopes, e = defaultScope(scopes)
			is.clientInfo = false
		}
	case grantJWTBearer:
		e = needConfidential(confidential, grant)
		if e == nil {
			is.username, e = s.onBehalfOf(t, form, clientID)
		}
	case "":
		e = &oauthErr{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		e = &oauthErr{http.StatusBadRequest, "unsupported_grant_type", "fakeidp supports the authorization_code, " +
			"client_credentials, refresh_token, jwt-bearer (on-behalf-of), device_code and password grants"}
	}
	if e != nil {
		s.oauthError(w, r, e.status, e.code, e.desc)
		return
	}
	resp := s.issueTokens(is)
	if grant == grantRefreshToken {
		s.holdRefresh(r, is.username)
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// oauthErr is an OAuth error answer: HTTP status, error code, description.
type oauthErr struct {
	status     int
	code, desc string
}

func invalidGrant(desc string) *oauthErr {
	return &oauthErr{http.StatusBadRequest, "invalid_grant", desc}
}

// redeemRefreshToken returns the user of a refresh token issued to clientID
// in t.
func (s *Server) redeemRefreshToken(t *tenant, rt, clientID string) (string, *oauthErr) {
	s.mu.Lock()
	key, ok := s.refresh[rt]
	s.mu.Unlock()
	switch {
	case !ok:
		return "", invalidGrant("the refresh token is unknown to this server")
	case key.clientID != clientID:
		return "", invalidGrant("the refresh token was issued to another client")
	case key.tenant != t.name:
		return "", invalidGrant("the refresh token was issued in another tenant")
	}
	return key.username, nil
}

// redeemDeviceCode returns the user of an approved device code and forgets
// the code, or an OAuth error.
func (s *Server) redeemDeviceCode(t *tenant, deviceCode, clientID string) (string, *oauthErr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	switch {
	case !ok:
		return "", invalidGrant("the device code is unknown or was already redeemed")
	case d.clientID != clientID:
		return "", invalidGrant("the device code was issued to another client")
	case d.tenant != t:
		return "", invalidGrant("the device code was issued in another tenant")
	case !s.cfg.now().Before(d.expires):
		s.forget(d)
		return "", &oauthErr{http.StatusBadRequest, "expired_token", "the device code has expired; start a new login"}
	case d.denied:
		s.forget(d)
		return "", &oauthErr{http.StatusBadRequest, "authorization_declined", "the user declined the login"}
	case !d.approved:
		return "", &oauthErr{http.StatusBadRequest, "authorization_pending", "the user has not approved the login yet"}
	}
	s.forget(d)
	return d.username, nil
}

func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		discardBody(r)
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return url.Values{}, false
	}
	if err := r.ParseForm(); err != nil {
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", "the form cannot be parsed")
		return url.Values{}, false
	}
	return r.PostForm, true
}

// clientAndScopes reads client_id and scope from a request's form and
// answers a request that lacks them (scope only when needScope).
func (s *Server) clientAndScopes(w http.ResponseWriter, r *http.Request, form url.Values, needScope bool) (string, []string, bool) {
	clientID := form.Get("client_id")
	scopes := parseScopes(form.Get("scope"))
	switch {
	case clientID == "":
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", "client_id is required")
		return "", nil, false
	case len(scopes) == 0 && needScope:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_scope", "scope is required")
		return "", nil, false
	}
	return clientID, scopes, true
}

// parseScopes splits a scope parameter and drops duplicates, keeping order.
func parseScopes(scope string) []string {
	var out []string
	for _, s := range strings.Fields(scope) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// oauthError writes an OAuth 2.0 error response (RFC 6749 section 5.2) in the
// shape Microsoft's identity platform uses, and counts it.
func (s *Server) oauthError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	s.count(s.tenantByName(r.PathValue("tenant")), func(c *Counts) {
		if code == "authorization_pending" {
			c.Pending++
		} else {
			c.Errors++
		}
	})
	corr := r.Header.Get("client-request-id")
	if !requestIDPattern.MatchString(corr) {
		corr = ""
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, map[string]string{
		"error":             code,
		"error_description": "fakeidp: " + desc,
		"timestamp":         s.cfg.now().UTC().Format(time.DateTime + "Z"),
		"correlation_id":    corr,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own maps and structs of strings and numbers reach here
		http.Error(w, "fakeidp: cannot encode response", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
