// Package fakeidp is a local identity provider that real MSAL Go clients,
// public and confidential, sign in against. It exists for tests and for
// demonstrations (the example CLI's and the web app's demo modes). It is not
// a security boundary: it asks users for no password, accepts any client ID
// as a public client, and trusts whoever can reach its loopback port. Never
// point a real application at it.
//
// # What it serves
//
// [Start] listens on 127.0.0.1 on a free port, over TLS with a fresh
// self-signed certificate. It serves a default tenant ([WithTenant], else
// [DefaultTenant]) and any added with [Server.AddTenant], each under its
// authority https://127.0.0.1:PORT/<tenant>; the tenant path segment selects
// the tenant, as with Microsoft Entra ID. Under every authority:
//
//   - GET  <authority>/v2.0/.well-known/openid-configuration (discovery)
//   - GET  <authority>/discovery/v2.0/keys (the key that signs every token,
//     a JWK set)
//   - GET  <authority>/oauth2/v2.0/authorize: an HTML sign-in form for an
//     authorization request; POST (the form) signs in and redirects
//   - POST <authority>/oauth2/v2.0/token with the grants authorization_code,
//     client_credentials, refresh_token, jwt-bearer (on-behalf-of),
//     device_code and password
//   - POST <authority>/oauth2/v2.0/devicecode (device authorization; MSAL Go
//     derives this URL from the token endpoint by replacing "token" with
//     "devicecode")
//
// and, once per server:
//
//   - GET https://127.0.0.1:PORT/common/UserRealm/<username> (MSAL Go asks it
//     before the password grant)
//   - GET https://127.0.0.1:PORT/me ([Server.MeURL]), a protected downstream
//     API: with "Authorization: Bearer <a user's access token for
//     [MeScope]>" it answers the user and the token's expiry as JSON ([Me]);
//     otherwise 401 with a WWW-Authenticate challenge
//
// A request for a tenant the server does not serve gets 400 invalid_request.
//
// MSAL Go must be configured with WithInstanceDiscovery(false), so that it
// talks only to this host, and with WithHTTPClient([Server.HTTPClient]) (or a
// client from [ClientFromPEM] in another process), so that it trusts the
// certificate; [Server.ConfidentialOptions] returns both for a confidential
// client.
//
// # Clients and users
//
// A client ID that is not registered is a public client: device code,
// password and refresh token grants, no client authentication. A
// confidential client is registered with [Server.RegisterClient]: its ID, a
// secret and/or certificates, and the redirect URIs it may use. A registered
// client must authenticate at the token endpoint on every grant, with
// client_secret or a client_assertion (RFC 7523: RS256, PS256 as MSAL's
// confidential.NewCredFromCert signs it, or ES256; signed by the key of a
// registered, currently valid certificate; iss and sub the client ID; aud the
// tenant's token endpoint; not expired); otherwise it gets 401
// invalid_client. Every registered client may get tokens in every tenant.
//
// Users who sign in on the authorize page are created with [Server.AddUser]
// in a tenant; the [User] it returns carries the object ID and the home
// account ID that MSAL will report (the partition key of the user's tokens).
// Usernames are found without regard to case; the added spelling is the one
// in tokens.
// The device code and password grants accept any username.
//
// # Grants
//
// authorization_code: the authorize endpoint needs a registered client_id
// and one of its redirect URIs (else it shows an error page and does not
// redirect), response_type=code, a scope, and PKCE with
// code_challenge_method=S256 (else it redirects with an error and the
// state); response_mode may only be query. On sign-in it redirects (303) to
// the redirect URI with code and state. The token endpoint then needs the
// same client (authenticated), the same redirect_uri and the code_verifier.
// A code lives ten minutes and is used up by its first redemption, successful
// or not. The nonce of the authorization request comes back in the ID
// token. MSAL Go's confidential AuthCodeURL adds none of state, nonce or
// PKCE, so the application adds them to the URL; MSAL Go's IDToken has no
// nonce field: read it from IDToken.RawToken.
//
// Headless Chromium trusts the server's certificate with
// --ignore-certificate-errors-spki-list=<[Server.CertSPKIHash]>; the page's
// elements have the ids username, submit and, on a refusal, error.
// Tests get a code without a browser with [Server.SignIn] (the form post,
// in-process: it returns the redirect URL) or do the whole flow with
// [Server.AuthCodeLogin]. A load test over HTTP posts the authorization
// request's parameters plus username as a form to the authorize endpoint.
//
// client_credentials: a confidential client; the scope must be one
// <resource>/.default (MSAL's added openid, offline_access and profile are
// ignored). The answer is an application token of the tenant (idtyp "app",
// no user), without refresh or ID token.
//
// refresh_token: the refresh token must have been issued to the same client
// (authenticated if confidential) in the same tenant.
//
// jwt-bearer with requested_token_use=on_behalf_of: a confidential client,
// and an assertion that is a current user access token this server issued
// in the same tenant with the client as its audience (the client ID or
// api://<client ID>). The answer is for the same user.
//
// # Tokens
//
// Access and ID tokens are JWTs signed with ES256 by a key made at Start
// (published at the keys endpoint). Every successful token response carries
// a new, unique access token whose audience is the resource of the first
// scope that names one ("api://x/read" gives "api://x"; none gives
// "fakeidp-resource"). The refresh token is issued for the offline_access
// scope (MSAL always asks for it) and is the same for every response to one
// user, client ID and tenant: the first login creates it, later logins and
// refreshes return it again; an unknown refresh token, or one of another
// client or tenant, gets invalid_grant. The id_token (for the openid scope)
// names the user: preferred_username, name, oid, sub, tid, and nonce when the
// authorization request had one. The client_info (uid = the user's object
// ID, utid = the tenant ID) gives MSAL its home account ID. Object IDs are
// derived from the username and tenant, so one username is one account, also
// across servers. The scope of a response is the requested scope, as sent.
// Access and ID tokens live for [WithTokenLifetime] (default one hour),
// changeable with [Server.SetTokenLifetime]. MSAL Go treats a token that
// expires within five minutes as expired, so a shorter lifetime makes every
// AcquireTokenSilent call redeem the refresh token (client credentials: a
// new token request).
//
// # Counting
//
// [Server.Requests] counts every request by endpoint and grant type, the
// codes and tokens issued and the errors; [Server.TenantRequests] the same
// for one tenant; [Server.UserRequests] what was done for one user (tokens
// by grant, codes, me calls). [Counts.Sub] gives the requests between two
// snapshots.
//
// # Device code logins
//
// By default a device code is approved when it is issued, so the first poll
// returns the tokens. MSAL Go v1.10.1 ignores the interval in the device code
// response: it polls after 50 ms, then waits 150 ms, 450 ms, 1.35 s, 4.05 s and
// every 5 s after that. An auto-approved device code login therefore takes a
// little over 50 ms, whatever the server does; the password grant has no such
// wait. With [WithManualApproval] codes wait for [Server.Approve] or
// [Server.Deny]. The user of a device code login is the one named by
// [Server.SetNextUser], or else a new one (user1@contoso.example,
// user2@contoso.example, ...).
//
// # How a test uses it
//
//	idp, err := fakeidp.Start()             // idp.Close() when done
//	idp.RegisterClient(fakeidp.ConfidentialClient{ID: "web", Secret: "s",
//		RedirectURIs: []string{"https://app.example/callback"}})
//	alice, err := idp.AddUser(idp.Tenant(), "alice@contoso.example")
//	cred, err := confidential.NewCredFromSecret("s")
//	app, err := confidential.New(idp.Authority(), "web", cred, idp.ConfidentialOptions()...)
//	res, err := idp.AuthCodeLogin(ctx, app, "web", "https://app.example/callback",
//		alice.Username, []string{fakeidp.MeScope})
//	// app.AcquireTokenSilent(ctx, scopes, confidential.WithSilentAccount(res.Account)) ...
//	// A daemon in another tenant:
//	_, err = idp.AddTenant("fabrikam")
//	tok, err := app.AcquireTokenByCredential(ctx, []string{"api://x/.default"},
//		confidential.WithTenantID("fabrikam"))
//
// # Concurrency
//
// A Server's methods may be called from many goroutines, and it serves many
// clients (goroutines or processes) at once. [Server.Close] stops it and waits
// for its goroutines.
package fakeidp
