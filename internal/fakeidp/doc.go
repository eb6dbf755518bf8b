// Package fakeidp is a local identity provider that the real MSAL Go public
// client can sign in against. It exists for tests and for demonstrations (the
// example CLI's demo mode). It is not a security boundary: it approves logins
// without asking for credentials, accepts any client ID and any password, signs
// nothing (its JWTs use "alg":"none"), and trusts whoever can reach its
// loopback port. Never point a real application at it.
//
// # What it serves
//
// [Start] listens on 127.0.0.1 on a free port, over TLS with a fresh
// self-signed certificate, and serves one tenant under the authority
// https://127.0.0.1:PORT/<tenant>:
//
//   - GET  <authority>/v2.0/.well-known/openid-configuration (tenant discovery)
//   - POST <authority>/oauth2/v2.0/devicecode (device authorization; MSAL Go
//     derives this URL from the token endpoint by replacing "token" with
//     "devicecode")
//   - POST <authority>/oauth2/v2.0/token with the grants device_code,
//     refresh_token and password
//   - GET  https://127.0.0.1:PORT/common/UserRealm/<username> (MSAL Go asks it
//     before the password grant)
//
// MSAL Go must be configured with public.WithInstanceDiscovery(false), so that
// it talks only to this host, and with public.WithHTTPClient([Server.HTTPClient])
// (or a client from [ClientFromPEM] in another process), so that it trusts the
// certificate.
//
// # Tokens
//
// Every successful token response carries a new, unique access token (an
// unsigned JWT). The refresh token is issued for the offline_access scope
// (MSAL always asks for it) and is the same for every response to one user and
// client ID: the first login creates it, later logins and refreshes return it
// again; an unknown refresh token, or one of another client, gets invalid_grant.
// The id_token (for the openid scope) names the user: preferred_username, name,
// oid, sub, tid. The client_info (uid = the user's object ID, utid = the tenant
// ID) gives MSAL its home account ID. Object IDs are derived from the username
// and tenant, so one username is one account, also across servers. The scope
// of a response is the requested scope, as sent. Access and ID tokens live for
// [WithTokenLifetime] (default one hour).
//
// The password grant accepts any non-empty password. It lets a test (or a
// child process) sign in a user of its choice quickly; MSAL Go marks
// AcquireTokenByUsernamePassword deprecated but v1.10.1 still has it. The
// authorization code grant and the authorize endpoint are not served.
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
// # Concurrency
//
// A Server's methods may be called from many goroutines, and it serves many
// clients (goroutines or processes) at once. [Server.Close] stops it and waits
// for its goroutines.
package fakeidp
