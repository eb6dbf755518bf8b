package fakeidp

import (
	"reflect"
	"strings"
)

// Counts is a snapshot of the requests a Server has received. It is a
// comparable value: tests compare it with ==.
type Counts struct {
	Discovery  int // GET openid-configuration or the signing keys
	UserRealm  int // GET common/UserRealm (before a password grant)
	DeviceCode int // POST to the device code endpoint
	Authorize  int // GET (the sign-in page) or POST (a sign-in) to the authorize endpoint
	Token      int // POST to the token endpoint, any grant, any outcome

	// Token requests by grant type, any outcome.
	DeviceCodeGrant        int // polls, including authorization_pending answers
	RefreshTokenGrant      int
	PasswordGrant          int
	AuthorizationCodeGrant int
	ClientCredentialsGrant int
	OnBehalfOfGrant        int // jwt-bearer (on-behalf-of)
	OtherGrant             int // unsupported or missing grant type

	CodesIssued  int // authorization codes issued (sign-ins, including [Server.SignIn])
	TokensIssued int // successful token responses (each with a new access token)
	Pending      int // authorization_pending answers
	Errors       int // other error answers (4xx), including unknown paths and refused sign-ins

	Me int // requests to the me endpoint, any outcome
}

// Sub returns c - d, field by field: the requests between two snapshots.
func (c Counts) Sub(d Counts) Counts {
	out := c
	vo := reflect.ValueOf(&out).Elem()
	vd := reflect.ValueOf(d)
	for i := range vo.NumField() {
		f := vo.Field(i)
		f.SetInt(f.Int() - vd.Field(i).Int())
	}
	return out
}

// Requests returns a snapshot of the request counts.
func (s *Server) Requests() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// TenantRequests returns the counts of the requests to one tenant's
// endpoints (its authority's paths), and of the me endpoint calls with its
// tokens. The zero Counts for a tenant the server does not serve.
func (s *Server) TenantRequests(tenant string) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[tenant]; t != nil {
		return t.counts
	}
	return Counts{}
}

// UserRequests returns what the server did for one user of a tenant (any
// username, added or not; compared without regard to case). Only what can be
// told apart by user is counted: token responses issued for the user (Token,
// TokensIssued and the grant's field each count one), codes issued to the
// user, and successful me endpoint calls. Refused requests are counted per
// server and per tenant only.
func (s *Server) UserRequests(tenant, username string) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.userCounts[userKey{tenant, strings.ToLower(username)}]; c != nil {
		return *c
	}
	return Counts{}
}

// count applies f to the server's counts and to t's (t may be nil).
func (s *Server) count(t *tenant, f func(*Counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.counts)
	if t != nil {
		f(&t.counts)
	}
}

// countUser applies f to the counts of one user. s.mu must be held.
func (s *Server) countUser(t *tenant, username string, f func(*Counts)) {
	k := userKey{t.name, strings.ToLower(username)}
	c := s.userCounts[k]
	if c == nil {
		c = &Counts{}
		s.userCounts[k] = c
	}
	f(c)
}

// countGrant increments the field of c for a grant type.
func countGrant(c *Counts, grant string) {
	switch grant {
	case grantDeviceCode, grantDeviceCodeURN:
		c.DeviceCodeGrant++
	case grantRefreshToken:
		c.RefreshTokenGrant++
	case grantPassword:
		c.PasswordGrant++
	case grantAuthorizationCode:
		c.AuthorizationCodeGrant++
	case grantClientCredentials:
		c.ClientCredentialsGrant++
	case grantJWTBearer:
		c.OnBehalfOfGrant++
	default:
		c.OtherGrant++
	}
}
