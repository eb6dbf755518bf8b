package fakeidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// ErrUnknownTenant is returned for a tenant that the server does not serve:
// neither the one given to [WithTenant] (or [DefaultTenant]) nor one added
// with [Server.AddTenant].
var ErrUnknownTenant = errors.New("fakeidp: unknown tenant")

// tenant is one tenant the server serves, under <origin>/<name>.
type tenant struct {
	name      string // path segment of the authority
	id        string // tid claim
	authority string // <origin>/<name>
	counts    Counts
}

func (t *tenant) issuer() string        { return t.authority + "/v2.0" }
func (t *tenant) tokenEndpoint() string { return t.authority + "/oauth2/v2.0/token" }

// addTenant registers a tenant. s.mu must be held.
func (s *Server) addTenant(name string) *tenant {
	if t := s.tenants[name]; t != nil {
		return t
	}
	t := &tenant{name: name, id: tenantID(name), authority: s.origin + "/" + name}
	s.tenants[name] = t
	s.tenantsByID[t.id] = t
	return t
}

// AddTenant makes the server serve another tenant (same rules as
// [WithTenant]) and returns its authority, https://127.0.0.1:PORT/<tenant>.
// Adding a tenant again returns the same authority. Every registered client
// may get tokens in every tenant, as a multi-tenant application can.
func (s *Server) AddTenant(tenant string) (authority string, err error) {
	if err := validateTenant(tenant); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addTenant(tenant).authority, nil
}

// TenantAuthority returns the authority of a tenant that the server serves.
func (s *Server) TenantAuthority(tenant string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if t == nil {
		return "", fmt.Errorf("%w %q", ErrUnknownTenant, tenant)
	}
	return t.authority, nil
}

// tenantByName returns the tenant, or nil.
func (s *Server) tenantByName(name string) *tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenants[name]
}

// ConfidentialClient is the registration of a confidential client (a web
// app, web API or daemon) with the server.
type ConfidentialClient struct {
	// ID is the client (application) ID that MSAL sends as client_id.
	ID string
	// Secret is the client secret; empty if the client has none.
	Secret string
	// Certificates are the certificates whose keys may sign the client's
	// assertions (confidential.NewCredFromCert); several allow rotation.
	Certificates []*x509.Certificate
	// RedirectURIs are the redirect URIs that authorization requests of this
	// client may name, compared exactly. Without one the client cannot use
	// the authorize endpoint.
	RedirectURIs []string
}

// client is a registered confidential client.
type client struct {
	id           string
	secret       [32]byte // SHA-256 of the secret, for a constant-time compare
	hasSecret    bool
	certs        []*x509.Certificate
	redirectURIs []string
}

func (c *client) secretMatches(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return c.hasSecret && subtle.ConstantTimeCompare(sum[:], c.secret[:]) == 1
}

// RegisterClient registers a confidential client, or replaces the
// registration of its ID (tokens already issued stay valid). The client needs
// a secret or a certificate. Once registered, a client ID must authenticate
// at the token endpoint with client_secret or client_assertion, whatever the
// grant; an unregistered client ID is a public client.
func (s *Server) RegisterClient(c ConfidentialClient) error {
	if c.ID == "" {
		return errors.New("fakeidp: RegisterClient: empty client ID")
	}
	if c.Secret == "" && len(c.Certificates) == 0 {
		return fmt.Errorf("fakeidp: RegisterClient %q: give a secret or a certificate", c.ID)
	}
	reg := &client{id: c.ID, hasSecret: c.Secret != "", redirectURIs: slices.Clone(c.RedirectURIs)}
	if reg.hasSecret {
		reg.secret = sha256.Sum256([]byte(c.Secret))
	}
	for _, cert := range c.Certificates {
		if cert == nil {
			return fmt.Errorf("fakeidp: RegisterClient %q: a nil certificate", c.ID)
		}
		reg.certs = append(reg.certs, cert)
	}
	for _, uri := range c.RedirectURIs {
		if err := checkRedirectURI(uri); err != nil {
			return fmt.Errorf("fakeidp: RegisterClient %q: %w", c.ID, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = reg
	return nil
}

// checkRedirectURI accepts an absolute http or https URL without a fragment.
func checkRedirectURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("redirect URI %q: want an absolute http or https URL without a fragment", uri)
	}
	return nil
}

// clientByID returns the registered client, or nil.
func (s *Server) clientByID(id string) *client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[id]
}

// User is an account in one tenant.
type User struct {
	Username string // sign-in name, e.g. alice@contoso.example
	Name     string // display name: the name claim, the local part of Username
	ObjectID string // oid claim; uid in client_info
	TenantID string // tid claim; utid in client_info
	// HomeAccountID is ObjectID + "." + TenantID: MSAL's home account ID,
	// which is also the partition key of the user's tokens in a cache.
	HomeAccountID string
}

type userKey struct{ tenant, username string }

// newUser makes the identity of a username in a tenant. Object IDs are derived
// from the username and tenant, so one username is one account, also across
// servers and whether or not it was added.
func newUser(t *tenant, username string) User {
	oid := nameUUID("oid", t.id, username)
	return User{
		Username: username, Name: displayName(username),
		ObjectID: oid, TenantID: t.id, HomeAccountID: oid + "." + t.id,
	}
}

// AddUser creates a user in a tenant (the path segment of its authority)
// who can then sign in on the authorize page. Adding a user again returns the
// same User. The device code and password grants do not need this: they
// accept any username.
func (s *Server) AddUser(tenant, username string) (User, error) {
	if username == "" || strings.ContainsAny(username, " \t\r\n") || len(username) > 256 {
		return User{}, fmt.Errorf("fakeidp: AddUser: invalid username %q", username)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if t == nil {
		return User{}, fmt.Errorf("%w %q", ErrUnknownTenant, tenant)
	}
	k := userKey{tenant, strings.ToLower(username)}
	if u, ok := s.users[k]; ok {
		return u, nil
	}
	u := newUser(t, username)
	s.users[k] = u
	return u, nil
}

// userByName returns the added user, if any.
func (s *Server) userByName(t *tenant, username string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[userKey{t.name, strings.ToLower(username)}]
	return u, ok
}
