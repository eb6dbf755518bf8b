package fakeidp

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// mePath is the path of the protected "me" API.
const mePath = "/me"

// MeResource is the audience of the access tokens the me endpoint accepts.
const MeResource = "api://fakeidp"

// MeScope is the scope to request for a token that the me endpoint accepts.
const MeScope = MeResource + "/me.read"

// MeURL is the URL of the protected "me" API: GET it with a user's access
// token for [MeScope] as "Authorization: Bearer <token>".
func (s *Server) MeURL() string { return s.origin + mePath }

// Me is the answer of the me endpoint.
type Me struct {
	Name      string    `json:"name"`
	Username  string    `json:"preferred_username"`
	ObjectID  string    `json:"oid"`
	TenantID  string    `json:"tid"`
	ExpiresAt time.Time `json:"expires_at"` // the access token's expiry, UTC, whole seconds
}

// handleMe serves the me API, a downstream API that a web app calls with a
// user's access token: it answers the user and when the token expires, or
// 401 with a WWW-Authenticate challenge.
func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	discardBody(r)
	if r.Method != http.MethodGet {
		s.count(nil, func(c *Counts) { c.Me++; c.Errors++ })
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	claims, t, err := s.bearer(r)
	if err != nil {
		s.count(t, func(c *Counts) { c.Me++; c.Errors++ })
		code := "invalid_token"
		if errors.Is(err, errNoToken) {
			code = ""
		}
		challenge := `Bearer realm="fakeidp", resource="` + MeResource + `"`
		if code != "" {
			desc := strings.NewReplacer(`"`, `'`, `\`, `/`).Replace(err.Error())
			challenge += `, error="` + code + `", error_description="` + desc + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": "fakeidp: " + err.Error()})
		return
	}
	username := claimString(claims, "upn")
	exp, _ := claimTime(claims, "exp")
	s.mu.Lock()
	s.counts.Me++
	t.counts.Me++
	s.countUser(t, username, func(c *Counts) { c.Me++ })
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, Me{
		Name: claimString(claims, "name"), Username: username, ObjectID: claimString(claims, "oid"),
		TenantID: t.id, ExpiresAt: time.Unix(exp, 0).UTC(),
	})
}

var errNoToken = errors.New("no bearer token")

// bearer checks the request's bearer token for the me API: a current user
// access token of this server for MeResource with MeScope. The tenant is
// that of a token that verified, even if the rest failed.
func (s *Server) bearer(r *http.Request) (map[string]any, *tenant, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, nil, errNoToken
	}
	claims, t, err := s.verifyAccessToken(strings.TrimSpace(token))
	switch {
	case err != nil:
		return nil, nil, err
	case claimString(claims, "idtyp") != "user":
		return nil, t, errors.New("the me API needs a user's access token (not an application token or an ID token)")
	case !audienceIs(claims, MeResource):
		return nil, t, errors.New("the token is for another audience than " + MeResource)
	case !strings.Contains(" "+claimString(claims, "scp")+" ", " "+MeScope+" "):
		return nil, t, errors.New("the token lacks the scope " + MeScope)
	}
	return claims, t, nil
}
