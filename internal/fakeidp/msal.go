package fakeidp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// ConfidentialOptions returns the options a confidential.Client needs to
// use this server: no instance discovery (talk to this host only) and an
// HTTP client that trusts the server's certificate. Append your own:
//
//	app, err := confidential.New(s.Authority(), id, cred,
//		append(s.ConfidentialOptions(), confidential.WithCache(c))...)
func (s *Server) ConfidentialOptions() []confidential.Option {
	return []confidential.Option{
		confidential.WithInstanceDiscovery(false),
		confidential.WithHTTPClient(s.client),
	}
}

// NewPKCE returns a fresh PKCE code verifier and its S256 code challenge
// (RFC 7636): send the challenge in the authorization request and the
// verifier with the code (confidential.WithChallenge(verifier)).
func NewPKCE() (verifier, challenge string) {
	verifier = randomString(32) // 43 characters
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// withAuthParams returns the authorization URL u (from MSAL's AuthCodeURL)
// with what a web app adds to it: state, nonce and an S256 PKCE challenge.
func withAuthParams(u *url.URL, state, nonce, challenge string) string {
	q := u.Query()
	q.Set("state", state)
	q.Set("nonce", nonce)
	q.Set("code_challenge", challenge)
	q.Set("code_challenge_method", "S256")
	v := *u
	v.RawQuery = q.Encode()
	return v.String()
}

// AuthCodeLogin signs in username, a user added with [Server.AddUser], on
// app with the authorization code flow, as a web app and a browser would:
// app.AuthCodeURL plus state, nonce and a PKCE challenge; [Server.SignIn];
// a check of state; app.AcquireTokenByAuthCode with the verifier; a check
// of the ID token's nonce. clientID and redirectURI must be registered
// ([Server.RegisterClient]); app is a confidential client of that ID on an
// authority of this server. The result is MSAL's, and MSAL has cached the
// tokens, so app.AcquireTokenSilent with res.Account is served.
func (s *Server) AuthCodeLogin(ctx context.Context, app confidential.Client, clientID, redirectURI, username string, scopes []string) (confidential.AuthResult, error) {
	authURL, err := app.AuthCodeURL(ctx, clientID, redirectURI, scopes)
	if err != nil {
		return confidential.AuthResult{}, fmt.Errorf("fakeidp: AuthCodeURL: %w", err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		return confidential.AuthResult{}, fmt.Errorf("fakeidp: AuthCodeURL: %w", err)
	}
	verifier, challenge := NewPKCE()
	state, nonce := randomString(16), randomString(16)
	back, err := s.SignIn(withAuthParams(u, state, nonce, challenge), username)
	if err != nil {
		return confidential.AuthResult{}, err
	}
	if back.Query().Get("state") != state {
		return confidential.AuthResult{}, errors.New("fakeidp: AuthCodeLogin: the redirect carries another state")
	}
	res, err := app.AcquireTokenByAuthCode(ctx, back.Query().Get("code"), redirectURI, scopes,
		confidential.WithChallenge(verifier))
	if err != nil {
		return confidential.AuthResult{}, fmt.Errorf("fakeidp: AcquireTokenByAuthCode: %w", err)
	}
	// MSAL Go v1.10 keeps no nonce in IDToken: read it from the raw token.
	if _, claims, _, _, err := parseJWT(res.IDToken.RawToken); err != nil || claimString(claims, "nonce") != nonce {
		return confidential.AuthResult{}, errors.New("fakeidp: AuthCodeLogin: the ID token does not carry the request's nonce")
	}
	return res, nil
}
