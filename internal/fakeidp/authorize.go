package fakeidp

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// authorizePath is the authorize endpoint under a tenant's authority.
const authorizePath = "/oauth2/v2.0/authorize"

// maxParam bounds state, nonce and login_hint.
const maxParam = 1024

// authRequest is a validated authorization request (RFC 6749 section 4.1.1,
// with PKCE and the OpenID Connect nonce).
type authRequest struct {
	tenant      *tenant
	clientID    string
	redirectURI string
	scopes      []string
	state       string
	challenge   string
	nonce       string
	loginHint   string
}

// hidden are the parameters the sign-in form carries to its POST.
func (q authRequest) hidden() [][2]string {
	return [][2]string{
		{"client_id", q.clientID}, {"response_type", "code"}, {"redirect_uri", q.redirectURI},
		{"scope", strings.Join(q.scopes, " ")}, {"state", q.state},
		{"code_challenge", q.challenge}, {"code_challenge_method", "S256"}, {"nonce", q.nonce},
	}
}

// authError is a refused authorization request. Without a trustworthy
// client and redirect URI the server shows an error page; otherwise it
// redirects the browser to the client with error and state (RFC 6749
// section 4.1.2.1).
type authError struct {
	redirect   bool
	code, desc string
}

func (e *authError) Error() string { return e.code + ": " + e.desc }

// parseAuthRequest validates the parameters of an authorization request.
func (s *Server) parseAuthRequest(t *tenant, q url.Values) (authRequest, *authError) {
	req := authRequest{tenant: t, clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri")}
	page := func(desc string) (authRequest, *authError) {
		return req, &authError{false, "invalid_request", desc}
	}
	redirect := func(code, desc string) (authRequest, *authError) {
		return req, &authError{true, code, desc}
	}
	c := s.clientByID(req.clientID)
	switch {
	case req.clientID == "":
		return page("client_id is required")
	case c == nil:
		return page("the client is not registered with this server")
	case req.redirectURI == "":
		return page("redirect_uri is required")
	case !slices.Contains(c.redirectURIs, req.redirectURI):
		return page("redirect_uri is not registered for this client")
	}
	req.state = q.Get("state")
	req.scopes = parseScopes(q.Get("scope"))
	req.challenge = q.Get("code_challenge")
	req.nonce = q.Get("nonce")
	req.loginHint = q.Get("login_hint")
	switch {
	case q.Get("response_type") != "code":
		return redirect("unsupported_response_type", "response_type must be code")
	case q.Get("response_mode") != "" && q.Get("response_mode") != "query":
		return redirect("invalid_request", "response_mode must be query")
	case len(req.scopes) == 0:
		return redirect("invalid_request", "scope is required")
	case req.challenge == "":
		return redirect("invalid_request", "PKCE is required: send code_challenge and code_challenge_method=S256")
	case q.Get("code_challenge_method") != "S256":
		return redirect("invalid_request", "code_challenge_method must be S256")
	case !challengePattern.MatchString(req.challenge):
		return redirect("invalid_request", "code_challenge must be 43 base64url characters (SHA-256)")
	case len(req.state) > maxParam || len(req.nonce) > maxParam || len(req.loginHint) > maxParam:
		return redirect("invalid_request", "state, nonce or login_hint is too long")
	}
	return req, nil
}

// redirectTo returns the redirect URI with params added to its query.
func redirectTo(redirectURI string, params url.Values) string {
	u, err := url.Parse(redirectURI) // registered, so it parses
	if err != nil {
		return redirectURI
	}
	q := u.Query()
	for k, vs := range params {
		for _, v := range vs {
			if v != "" {
				q.Add(k, v)
			}
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (e *authError) redirectURL(req authRequest) string {
	return redirectTo(req.redirectURI, url.Values{
		"error": {e.code}, "error_description": {"fakeidp: " + e.desc}, "state": {req.state},
	})
}

// signIn signs in a user for a validated request and returns where to
// redirect the browser: the redirect URI with code and state.
func (s *Server) signIn(req authRequest, username string) (string, error) {
	if strings.TrimSpace(username) == "" {
		return "", errors.New("enter a username")
	}
	user, ok := s.userByName(req.tenant, strings.TrimSpace(username))
	if !ok {
		msg := fmt.Sprintf("there is no account %q in tenant %s", strings.TrimSpace(username), req.tenant.name)
		if h := s.cfg.unknownUser; h != "" {
			msg += ". " + h
		}
		return "", errors.New(msg)
	}
	code := s.newCode(req, user)
	return redirectTo(req.redirectURI, url.Values{"code": {code}, "state": {req.state}}), nil
}

// SignIn does what a browser does on the authorize page: authorizeURL is an
// authorization request to this server (as a web app builds it, e.g. from
// confidential.Client.AuthCodeURL plus state, nonce, code_challenge and
// code_challenge_method=S256), and username the name typed in the form. It
// returns the URL the browser is then sent to: the request's redirect URI
// with code and state. It returns an error, and issues no code, where the
// server would show an error page or redirect with an error, and for a
// username that was not added to the tenant with [Server.AddUser]. It
// counts as a POST to the authorize endpoint.
func (s *Server) SignIn(authorizeURL, username string) (*url.URL, error) {
	u, err := url.Parse(authorizeURL)
	if err != nil {
		return nil, fmt.Errorf("fakeidp: SignIn: %w", err)
	}
	if u.Scheme+"://"+u.Host != s.origin {
		return nil, fmt.Errorf("fakeidp: SignIn: %s is not on this server (%s)", u.Redacted(), s.origin)
	}
	name, rest, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	t := s.tenantByName(name)
	if t == nil || "/"+rest != authorizePath {
		s.count(nil, func(c *Counts) { c.Errors++ })
		return nil, fmt.Errorf("fakeidp: SignIn: %s is not the authorize endpoint of a tenant of this server", u.Path)
	}
	s.count(t, func(c *Counts) { c.Authorize++ })
	req, aerr := s.parseAuthRequest(t, u.Query())
	if aerr != nil {
		s.count(t, func(c *Counts) { c.Errors++ })
		return nil, fmt.Errorf("fakeidp: SignIn: authorization request refused: %w", aerr)
	}
	to, err := s.signIn(req, username)
	if err != nil {
		s.count(t, func(c *Counts) { c.Errors++ })
		return nil, fmt.Errorf("fakeidp: SignIn: %w", err)
	}
	return url.Parse(to)
}

// handleAuthorize serves the authorize endpoint: GET shows the sign-in form
// for an authorization request, POST (the form) signs the user in and
// redirects to the client with a code.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.count(t, func(c *Counts) { c.Authorize++ })
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		discardBody(r)
		params = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			s.count(t, func(c *Counts) { c.Errors++ })
			s.authPage(w, http.StatusBadRequest, signInPage{Error: "The form cannot be read."})
			return
		}
		params = r.PostForm
	default:
		discardBody(r)
		w.Header().Set("Allow", "GET, POST")
		s.count(t, func(c *Counts) { c.Errors++ })
		s.authPage(w, http.StatusMethodNotAllowed, signInPage{Error: "Use GET or POST."})
		return
	}
	req, aerr := s.parseAuthRequest(t, params)
	if aerr != nil {
		s.count(t, func(c *Counts) { c.Errors++ })
		if aerr.redirect {
			http.Redirect(w, r, aerr.redirectURL(req), http.StatusSeeOther)
			return
		}
		s.authPage(w, http.StatusBadRequest, signInPage{Error: "This sign-in request is invalid: " + aerr.desc + "."})
		return
	}
	page := signInPage{
		Action: t.authority + authorizePath, Tenant: t.name, ClientID: req.clientID,
		Hidden: req.hidden(), Username: req.loginHint,
	}
	if r.Method == http.MethodGet {
		s.authPage(w, http.StatusOK, page)
		return
	}
	username := params.Get("username")
	to, err := s.signIn(req, username)
	if err != nil {
		s.count(t, func(c *Counts) { c.Errors++ })
		page.Username, page.Error = username, "Sign-in failed: "+err.Error()+"."
		s.authPage(w, http.StatusBadRequest, page)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// signInPage is what the sign-in template shows.
type signInPage struct {
	Action   string      // the form's target; "" for an error page without a form
	Tenant   string      // tenant path segment
	ClientID string      // the client asking for the sign-in
	Hidden   [][2]string // the authorization request's parameters
	Username string      // prefilled: login_hint, or what was typed
	Error    string
}

var signInTemplate = template.Must(template.New("signin").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - fakeidp</title>
<style>
body { font-family: sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; }
label, input, button { display: block; width: 100%; box-sizing: border-box; margin: .4rem 0; }
input, button { padding: .5rem; font-size: 1rem; }
.error { color: #a00; }
.note { color: #555; font-size: .85rem; }
</style>
</head>
<body>
<h1>Sign in</h1>
{{if .Error}}<p class="error" id="error" role="alert">{{.Error}}</p>{{end}}
{{if .Action}}
<p>Application <code id="client-id">{{.ClientID}}</code> asks you to sign in to tenant <code>{{.Tenant}}</code>.</p>
<form method="post" action="{{.Action}}" id="signin">
{{range .Hidden}}<input type="hidden" name="{{index . 0}}" value="{{index . 1}}">
{{end}}<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" autofocus required>
<button type="submit" id="submit">Sign in</button>
</form>
{{end}}
<p class="note">fakeidp is a local test identity provider. It asks for no password.</p>
</body>
</html>
`))

// authPage renders the sign-in template.
func (s *Server) authPage(w http.ResponseWriter, status int, p signInPage) {
	var buf bytes.Buffer
	if err := signInTemplate.Execute(&buf, p); err != nil { // only strings: cannot fail
		http.Error(w, "fakeidp: cannot render the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
