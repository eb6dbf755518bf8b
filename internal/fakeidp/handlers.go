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
	grantDeviceCode    = "device_code"
	grantDeviceCodeURN = "urn:ietf:params:oauth:grant-type:device_code"
	grantRefreshToken  = "refresh_token"
	grantPassword      = "password"
)

func (s *Server) routes() http.Handler {
	t := "/" + s.cfg.tenant
	mux := http.NewServeMux()
	mux.HandleFunc(t+"/v2.0/.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc(t+"/oauth2/v2.0/devicecode", s.handleDeviceCode)
	mux.HandleFunc(t+"/oauth2/v2.0/token", s.handleToken)
	mux.HandleFunc(t+"/device", s.handleDevicePage)
	mux.HandleFunc("/common/UserRealm/{username}", s.handleUserRealm)
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

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	s.count(func(c *Counts) { c.Discovery++ })
	if !s.allow(w, r, http.MethodGet) {
		return
	}
	a := s.authority
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                a + "/v2.0",
		"authorization_endpoint":                a + "/oauth2/v2.0/authorize",
		"token_endpoint":                        a + "/oauth2/v2.0/token",
		"device_authorization_endpoint":         a + "/oauth2/v2.0/devicecode",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{grantDeviceCodeURN, grantRefreshToken, grantPassword},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"none"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"tenant_region_scope":                   nil,
		"cloud_instance_name":                   strings.TrimPrefix(s.origin, "https://"),
	})
}

func (s *Server) handleUserRealm(w http.ResponseWriter, r *http.Request) {
	s.count(func(c *Counts) { c.UserRealm++ })
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

func (s *Server) handleDevicePage(w http.ResponseWriter, r *http.Request) {
	discardBody(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "This is fakeidp, a local test identity provider. Device codes are approved")
	fmt.Fprintln(w, "by the program that runs it, not on this page.")
}

func (s *Server) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	s.count(func(c *Counts) { c.DeviceCode++ })
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

	d := &deviceAuth{deviceCode: "fakeidp-dc." + randomString(24), clientID: clientID}
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

	verify := s.authority + "/device"
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

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.count(func(c *Counts) { c.Token++; c.OtherGrant++ })
		s.allow(w, r, http.MethodPost)
		return
	}
	form, parsed := s.parseForm(w, r)
	grant := form.Get("grant_type")
	s.count(func(c *Counts) {
		c.Token++
		switch grant {
		case grantDeviceCode, grantDeviceCodeURN:
			c.DeviceCodeGrant++
		case grantRefreshToken:
			c.RefreshTokenGrant++
		case grantPassword:
			c.PasswordGrant++
		default:
			c.OtherGrant++
		}
	})
	if !parsed {
		return
	}
	clientID, scopes, ok := s.clientAndScopes(w, r, form, grant != "")
	if !ok {
		return
	}

	var username string
	switch grant {
	case grantDeviceCode, grantDeviceCodeURN:
		u, code, desc := s.redeemDeviceCode(form.Get("device_code"), clientID)
		if code != "" {
			s.oauthError(w, r, http.StatusBadRequest, code, desc)
			return
		}
		username = u
	case grantRefreshToken:
		s.mu.Lock()
		key, ok := s.refresh[form.Get("refresh_token")]
		s.mu.Unlock()
		switch {
		case !ok:
			s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown to this server")
			return
		case key.clientID != clientID:
			s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", "the refresh token was issued to another client")
			return
		}
		username = key.username
	case grantPassword:
		username = form.Get("username")
		if username == "" || form.Get("password") == "" {
			s.oauthError(w, r, http.StatusBadRequest, "invalid_request", "username and password are required")
			return
		}
	case "":
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		s.oauthError(w, r, http.StatusBadRequest, "unsupported_grant_type",
			"fakeidp supports the device_code, refresh_token and password grants")
		return
	}
	resp := s.issueTokens(username, clientID, scopes, form.Get("client_info") == "1")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// redeemDeviceCode returns the user of an approved device code and forgets
// the code, or an OAuth error code and description.
func (s *Server) redeemDeviceCode(deviceCode, clientID string) (username, errCode, errDesc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	switch {
	case !ok:
		return "", "invalid_grant", "the device code is unknown or was already redeemed"
	case d.clientID != clientID:
		return "", "invalid_grant", "the device code was issued to another client"
	case !s.cfg.now().Before(d.expires):
		s.forget(d)
		return "", "expired_token", "the device code has expired; start a new login"
	case d.denied:
		s.forget(d)
		return "", "authorization_declined", "the user declined the login"
	case !d.approved:
		return "", "authorization_pending", "the user has not approved the login yet"
	}
	s.forget(d)
	return d.username, "", ""
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

// parseScopes splits a scope parameter and drops duplicates, keeping order.
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

func parseScopes(scope string) []string {
	var out []string
	for _, s := range strings.Fields(scope) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (s *Server) count(f func(*Counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.counts)
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// oauthError writes an OAuth 2.0 error response (RFC 6749 section 5.2) in the
// shape Microsoft's identity platform uses, and counts it.
func (s *Server) oauthError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	s.count(func(c *Counts) {
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
