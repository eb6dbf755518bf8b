package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// Cookie names. The sign-in cookie lives from /signin to /callback; the
// session cookie from the callback to sign-out.
const (
	loginCookie   = "webapp_signin"
	sessionCookie = "webapp_session"
)

const (
	signInLifetime  = 10 * time.Minute // from /signin to /callback
	sessionLifetime = 8 * time.Hour
)

// server is one replica of the web app. Its handlers run on many goroutines
// at once: they share the MSAL client (which is safe for that with the
// distributed cache), the store, and nothing else that changes.
type server struct {
	name        string // shown on every page, to tell replicas apart
	app         confidential.Client
	clientID    string
	redirectURL string
	scopes      []string // the downstream API's
	apiURL      string
	api         *http.Client
	tokens      *tokenCache
	records     *records
	cookies     *sealer
	secure      bool // cookies are Secure: the app is served over https
	log         *slog.Logger
}

// signInState is the sealed content of the sign-in cookie: what the callback
// checks the identity provider's answer against.
type signInState struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"` // PKCE code verifier
	Expires  int64  `json:"exp"`
}

// sessionState is the sealed content of the session cookie: no token, only
// the session's ID and the user's partition key.
type sessionState struct {
	SID     string `json:"sid"`
	Account string `json:"account"` // home account ID
	Expires int64  `json:"exp"`
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleHome)
	mux.HandleFunc("GET /signin", s.handleSignIn)
	mux.HandleFunc("GET /callback", s.handleCallback)
	mux.HandleFunc("GET /me", s.handleMe)
	mux.HandleFunc("POST /signout", s.handleSignOut)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", s.tokens.metrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.page(w, r, http.StatusNotFound, page{Title: "Not found", Message: "There is no page at " + r.URL.Path + "."})
	})
	return s.protect(mux)
}

// protect adds the headers every page gets and turns a panic into a plain
// error page (the trace goes to the log, never to the browser).
func (s *server) protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("web-app: handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
				s.page(w, r, http.StatusInternalServerError, page{Title: "Something went wrong", Message: "The app hit an internal error. It is logged; try again."})
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func (s *server) handleHome(w http.ResponseWriter, r *http.Request) {
	_, rec, err := s.currentSession(r)
	if err != nil {
		s.page(w, r, http.StatusOK, page{Title: "Welcome", SignIn: true,
			Message: "Sign in to see who you are to the downstream API. Your tokens stay on the server, in your own partition of the token cache."})
		return
	}
	s.page(w, r, http.StatusOK, page{Title: "Signed in", User: rec.Username, SignOut: true,
		Message: "You are signed in. Open the API page on any replica: the token comes from the shared cache."})
}

// handleSignIn starts the authorization code flow: a fresh state, nonce and
// PKCE verifier, sealed in the sign-in cookie, and a redirect to the
// identity provider with the state, the nonce and the verifier's challenge.
func (s *server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	st := signInState{State: randomString(32), Nonce: randomString(32), Verifier: randomString(32),
		Expires: time.Now().Add(signInLifetime).Unix()}
	u, err := s.app.AuthCodeURL(r.Context(), s.clientID, s.redirectURL, withOIDCScopes(s.scopes))
	if err != nil {
		s.log.Error("web-app: authorize URL", "err", err)
		s.page(w, r, http.StatusBadGateway, page{Title: "Sign-in is unavailable", Message: "The identity provider could not be reached. Try again later."})
		return
	}
	// MSAL Go's confidential AuthCodeURL has no options for these three.
	au, err := url.Parse(u)
	if err != nil {
		s.page(w, r, http.StatusBadGateway, page{Title: "Sign-in is unavailable", Message: "The identity provider's authorize URL is not valid."})
		return
	}
	q := au.Query()
	q.Set("state", st.State)
	q.Set("nonce", st.Nonce)
	challenge := sha256.Sum256([]byte(st.Verifier))
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	q.Set("code_challenge_method", "S256")
	q.Set("response_mode", "query")
	au.RawQuery = q.Encode()
	if err := s.setCookie(w, loginCookie, st, signInLifetime); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, au.String(), http.StatusFound)
}

// withOIDCScopes adds the scopes a sign-in needs to the API's: an ID token
// (openid, profile) and a refresh token (offline_access).
func withOIDCScopes(scopes []string) []string {
	out := slices.Clone(scopes)
	for _, s := range []string{"openid", "profile", "offline_access"} {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// refusal is a sign-in response the app refuses, with what the user sees.
type refusal struct {
	status       int
	title, msg   string
	reason       string // for the log
	clearSignIn  bool
	removeTokens string // a partition to remove (tokens already issued)
}

// handleCallback finishes the sign-in: it checks the identity provider's
// answer against the sign-in cookie before anything is sent to the token
// endpoint, redeems the code with the PKCE verifier, checks the ID token's
// nonce, and starts a session.
func (s *server) handleCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	st, ref := s.checkCallback(r)
	if ref != nil {
		s.refuse(w, r, ref)
		return
	}
	s.clearCookie(w, loginCookie)
	res, err := s.app.AcquireTokenByAuthCode(ctx, r.URL.Query().Get("code"), s.redirectURL, s.scopes,
		confidential.WithChallenge(st.Verifier))
	if err != nil {
		s.refuse(w, r, &refusal{status: http.StatusBadGateway, title: "Sign-in failed",
			msg:    "The identity provider did not accept the sign-in. Please sign in again.",
			reason: "token request: " + oneLine(err.Error())})
		return
	}
	account := res.Account.HomeAccountID
	if nonce, err := idTokenNonce(res.IDToken.RawToken); err != nil || subtle.ConstantTimeCompare([]byte(nonce), []byte(st.Nonce)) != 1 {
		s.refuse(w, r, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
			msg:    "The identity provider's answer was not for this sign-in (its nonce does not match). Nothing was kept. Please sign in again.",
			reason: "ID token nonce mismatch", removeTokens: account})
		return
	}
	if account == "" {
		s.refuse(w, r, &refusal{status: http.StatusBadGateway, title: "Sign-in failed",
			msg: "The identity provider returned no account. Please sign in again.", reason: "no home account ID"})
		return
	}
	username := res.Account.PreferredUsername
	if username == "" {
		username = res.IDToken.Name
	}
	sid, err := s.records.newSession(ctx, sessionRecord{Account: account, Username: username}, sessionLifetime)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.setCookie(w, sessionCookie, sessionState{SID: sid, Account: account,
		Expires: time.Now().Add(sessionLifetime).Unix()}, sessionLifetime); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("web-app: signed in")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// checkCallback checks the callback request against the sign-in cookie. It
// sends nothing to the identity provider.
func (s *server) checkCallback(r *http.Request) (signInState, *refusal) {
	q := r.URL.Query()
	again := " Please sign in again."
	if e := q.Get("error"); e != "" {
		return signInState{}, &refusal{status: http.StatusBadRequest, title: "Sign-in was not completed",
			msg:    "The identity provider said: " + e + ": " + q.Get("error_description") + "." + again,
			reason: "identity provider error", clearSignIn: true}
	}
	var st signInState
	err := s.readCookie(r, loginCookie, &st)
	switch {
	case errors.Is(err, http.ErrNoCookie):
		return st, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
			msg:    "This sign-in was not started in this browser, or it took too long." + again,
			reason: "no sign-in cookie"}
	case err != nil:
		return st, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
			msg:    "This browser's sign-in cookie is not one this app made." + again,
			reason: "sign-in cookie does not open", clearSignIn: true}
	case time.Now().Unix() > st.Expires:
		return st, &refusal{status: http.StatusBadRequest, title: "Sign-in expired",
			msg: "The sign-in took too long." + again, reason: "sign-in cookie expired", clearSignIn: true}
	case q.Get("state") == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1:
		return st, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
			msg:    "The identity provider's answer does not belong to the sign-in this browser started (state mismatch)." + again,
			reason: "state mismatch", clearSignIn: true}
	case st.Verifier == "" || st.Nonce == "":
		return st, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
			msg:    "This sign-in has no PKCE verifier or nonce, so its answer cannot be checked." + again,
			reason: "sign-in cookie without PKCE verifier or nonce", clearSignIn: true}
	case q.Get("code") == "":
		return st, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
			msg: "The identity provider's answer has no authorization code." + again, reason: "no code", clearSignIn: true}
	}
	if err := s.records.useState(r.Context(), st.State, signInLifetime); err != nil {
		if errors.Is(err, errReplayed) {
			return st, &refusal{status: http.StatusBadRequest, title: "Sign-in refused",
				msg:    "This sign-in answer was already used once; it cannot be used again." + again,
				reason: "state replayed", clearSignIn: true}
		}
		return st, &refusal{status: http.StatusServiceUnavailable, title: "Sign-in is unavailable",
			msg: "The session store cannot be reached. Try again later.", reason: "store: " + oneLine(err.Error())}
	}
	return st, nil
}

func (s *server) refuse(w http.ResponseWriter, r *http.Request, ref *refusal) {
	s.log.Warn("web-app: sign-in refused", "reason", ref.reason)
	if ref.clearSignIn {
		s.clearCookie(w, loginCookie)
	}
	if ref.removeTokens != "" {
		if err := s.tokens.cache.RemovePartition(r.Context(), ref.removeTokens); err != nil {
			s.log.Error("web-app: removing the tokens of a refused sign-in", "err", err)
		}
	}
	s.page(w, r, ref.status, page{Title: ref.title, Message: ref.msg, SignIn: true})
}

// idTokenNonce returns the nonce claim of an ID token. The token came from
// the token endpoint over TLS, directly to this app, so its signature need
// not be checked (OpenID Connect Core 3.1.3.7).
func idTokenNonce(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) < 2 {
		return "", errors.New("no ID token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", err
	}
	var claims struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	return claims.Nonce, nil
}

// handleMe calls the downstream API with a token from AcquireTokenSilent:
// from the user's partition of the shared cache, or redeemed there with the
// user's refresh token.
func (s *server) handleMe(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, rec, err := s.currentSession(r)
	if err != nil {
		s.signInNeeded(w, r, err)
		return
	}
	acct, err := s.app.Account(ctx, sess.Account)
	if err != nil || acct.HomeAccountID == "" {
		s.signInNeeded(w, r, errNoTokens)
		return
	}
	res, err := s.app.AcquireTokenSilent(ctx, s.scopes, confidential.WithSilentAccount(acct))
	if err != nil {
		s.log.Info("web-app: silent token failed", "err", oneLine(err.Error()))
		s.signInNeeded(w, r, errNoTokens)
		return
	}
	source := "the shared token cache"
	if res.Metadata.TokenSource == confidential.TokenSourceIdentityProvider {
		source = "the identity provider (the cached refresh token redeemed)"
	}
	fields, err := s.callAPI(ctx, res.AccessToken)
	if err != nil {
		s.log.Warn("web-app: downstream API", "err", oneLine(err.Error()))
		s.page(w, r, http.StatusBadGateway, page{Title: "The API failed", User: rec.Username, SignOut: true,
			Message: "The downstream API did not answer as expected. It is logged; try again later."})
		return
	}
	s.page(w, r, http.StatusOK, page{Title: "You, to the API", User: rec.Username, SignOut: true,
		Message: "The downstream API was called with an access token from AcquireTokenSilent.",
		Token:   &tokenInfo{Expires: res.ExpiresOn.UTC().Format(time.RFC1123), In: time.Until(res.ExpiresOn).Round(time.Minute).String(), Source: source},
		API:     fields})
}

var errNoTokens = errors.New("no tokens for this user")

func (s *server) signInNeeded(w http.ResponseWriter, r *http.Request, err error) {
	msg := "You are not signed in."
	switch {
	case errors.Is(err, errNoSession):
		msg = "Your session has ended (signed out, or expired). Please sign in."
	case errors.Is(err, errUnsealed):
		msg = "Your session cookie was not made by this app. Please sign in."
	case errors.Is(err, errNoTokens):
		msg = "The token cache holds no tokens for you any more (signed out elsewhere, or expired). Please sign in."
	case errors.Is(err, http.ErrNoCookie):
	default:
		s.log.Error("web-app: session", "err", oneLine(err.Error()))
		msg = "Your session cannot be checked right now. Try again later."
	}
	if !errors.Is(err, http.ErrNoCookie) {
		s.clearCookie(w, sessionCookie)
	}
	s.page(w, r, http.StatusUnauthorized, page{Title: "Please sign in", Message: msg, SignIn: true})
}

// apiField is one field of the downstream API's answer.
type apiField struct{ Name, Value string }

// callAPI calls the downstream API and returns the fields of its JSON
// object answer.
func (s *server) callAPI(ctx context.Context, token string) ([]apiField, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.apiURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.api.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, errors.New("the answer is not a JSON object")
	}
	var fields []apiField
	for k, v := range obj {
		fields = append(fields, apiField{k, fmt.Sprint(v)})
	}
	slices.SortFunc(fields, func(a, b apiField) int { return strings.Compare(a.Name, b.Name) })
	return fields, nil
}

// handleSignOut removes the user's partition from the token cache (for
// every replica: MSAL's RemoveAccount never reaches a partition), ends the
// session and clears the cookie. It is a POST from the app's own form; a
// cross-site POST carries no session cookie (SameSite=Lax) and is refused
// by the Origin check.
func (s *server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && !sameOrigin(o, r) {
		s.page(w, r, http.StatusForbidden, page{Title: "Refused", Message: "Sign-out must come from this app's own page."})
		return
	}
	ctx := r.Context()
	var sess sessionState
	if err := s.readCookie(r, sessionCookie, &sess); err != nil {
		s.clearCookie(w, sessionCookie)
		s.page(w, r, http.StatusOK, page{Title: "Signed out", Message: "You were not signed in.", SignIn: true})
		return
	}
	rec, _, err := s.records.session(ctx, sess.SID)
	switch {
	case errors.Is(err, errNoSession) || err == nil && rec.Account != sess.Account:
		// An ended session's cookie: the user may have signed in again
		// since, with a new session whose tokens are not this cookie's.
		s.clearCookie(w, sessionCookie)
		s.page(w, r, http.StatusOK, page{Title: "Signed out", Message: "This session had already ended.", SignIn: true})
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	if err := s.tokens.cache.RemovePartition(ctx, sess.Account); err != nil {
		s.fail(w, r, fmt.Errorf("removing your tokens: %w", err))
		return
	}
	if err := s.records.endSession(ctx, sess.SID, sessionLifetime); err != nil {
		s.fail(w, r, fmt.Errorf("ending the session: %w", err))
		return
	}
	s.clearCookie(w, sessionCookie)
	s.log.Info("web-app: signed out")
	s.page(w, r, http.StatusOK, page{Title: "Signed out",
		Message: "You are signed out: your tokens are removed from the shared cache and your session is ended on every replica.", SignIn: true})
}

func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// currentSession returns the request's session: a cookie that opens, and a
// live session record for the same account.
func (s *server) currentSession(r *http.Request) (sessionState, sessionRecord, error) {
	var sess sessionState
	if err := s.readCookie(r, sessionCookie, &sess); err != nil {
		return sess, sessionRecord{}, err
	}
	if time.Now().Unix() > sess.Expires {
		return sess, sessionRecord{}, errNoSession
	}
	rec, _, err := s.records.session(r.Context(), sess.SID)
	if err != nil {
		return sess, rec, err
	}
	if subtle.ConstantTimeCompare([]byte(rec.Account), []byte(sess.Account)) != 1 {
		return sess, rec, errNoSession
	}
	return sess, rec, nil
}

// fail shows a generic error page; the details go to the log only.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("web-app: request failed", "path", r.URL.Path, "err", oneLine(err.Error()))
	s.page(w, r, http.StatusInternalServerError, page{Title: "Something went wrong", Message: "The app could not finish this request. It is logged; try again."})
}

func (s *server) setCookie(w http.ResponseWriter, name string, v any, maxAge time.Duration) error {
	sealed, err := s.cookies.seal(name, v)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: sealed, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	return nil
}

func (s *server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// readCookie opens the sealed cookie name into v: http.ErrNoCookie when
// there is none, errUnsealed when it is not the app's.
func (s *server) readCookie(r *http.Request, name string, v any) error {
	c, err := r.Cookie(name)
	if err != nil {
		return err
	}
	return s.cookies.open(name, c.Value, v)
}
