package fakeidp

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultTenant is the tenant of a Server started without [WithTenant].
const DefaultTenant = "8f4e1b2a-5c3d-4e6f-9a7b-0c1d2e3f4a5b"

// UserDomain is the domain of generated usernames (user1@contoso.example).
const UserDomain = "contoso.example"

// deviceCodeLifetime is the expires_in of a device code.
const deviceCodeLifetime = 15 * time.Minute

// ErrUnknownUserCode is returned by [Server.Approve] and [Server.Deny] for a
// user code that was never issued, has expired or has already been redeemed.
var ErrUnknownUserCode = errors.New("fakeidp: unknown, expired or redeemed user code")

// Option configures [Start]. The set of options is closed.
type Option interface{ apply(*config) }

type config struct {
	tenant         string
	manualApproval bool
	tokenLifetime  time.Duration
	logger         *slog.Logger
	now            func() time.Time
	// unknownUser is added to the sign-in page's error for a username
	// that was not added.
	unknownUser string
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTenant sets the tenant, the last path segment of the authority. It must
// be lower case (MSAL Go lower-cases the authority URL), made of a-z, 0-9, '.'
// and '-', and must not contain "token" (MSAL Go derives the device code URL by
// replacing every "token" in the token endpoint URL). A tenant that is not a
// GUID gets a GUID tenant ID (the tid claim) derived from its name.
func WithTenant(tenant string) Option {
	return optionFunc(func(c *config) { c.tenant = tenant })
}

// WithManualApproval makes device codes wait for [Server.Approve] or
// [Server.Deny] instead of being approved when issued.
func WithManualApproval() Option {
	return optionFunc(func(c *config) { c.manualApproval = true })
}

// WithTokenLifetime sets the lifetime of access and ID tokens (expires_in),
// rounded down to whole seconds; at least one second. The default is one hour.
// MSAL Go does not cache an access token that expires within five minutes, so
// a shorter lifetime makes every AcquireTokenSilent call redeem the refresh
// token.
func WithTokenLifetime(d time.Duration) Option {
	return optionFunc(func(c *config) { c.tokenLifetime = d })
}

// WithLogger logs every request (method, path, grant type, status; never a
// token or code) at debug level and server errors (such as a client that
// rejects the certificate) at warn level. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithUnknownUserHint adds hint to the error that the sign-in page shows at
// once for a username that was not added with [Server.AddUser], e.g. which
// usernames exist and how to add one.
func WithUnknownUserHint(hint string) Option {
	return optionFunc(func(c *config) { c.unknownUser = hint })
}

// withClock replaces time.Now, for tests of expiry.
func withClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.now = now })
}

var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// validateTenant checks a tenant path segment (see [WithTenant]).
func validateTenant(tenant string) error {
	switch {
	case !tenantPattern.MatchString(tenant) || len(tenant) > 128:
		return fmt.Errorf("fakeidp: tenant %q: use lower-case letters, digits, '.' and '-'", tenant)
	case strings.Contains(tenant, "token"):
		return fmt.Errorf("fakeidp: tenant %q must not contain \"token\" (MSAL Go would derive a wrong device code URL)", tenant)
	case tenant == "adfs" || tenant == "dstsv2" || tenant == "common" || tenant == "organizations" || tenant == "consumers":
		return fmt.Errorf("fakeidp: tenant %q has a special meaning to MSAL", tenant)
	}
	return nil
}

func (c *config) validate() error {
	if err := validateTenant(c.tenant); err != nil {
		return err
	}
	if c.tokenLifetime < time.Second {
		return fmt.Errorf("fakeidp: token lifetime %v is shorter than a second", c.tokenLifetime)
	}
	return nil
}

// Server is a running local identity provider. Its methods are safe for
// concurrent use. The zero value is not usable; call [Start].
type Server struct {
	cfg       config
	tenantID  string // of the default tenant
	authority string // of the default tenant: https://127.0.0.1:PORT/<tenant>
	origin    string // https://127.0.0.1:PORT
	certPEM   []byte
	spki      []byte // the certificate's SubjectPublicKeyInfo
	client    *http.Client
	signer    *signer
	http      *http.Server
	served    chan struct{} // closed when Serve has returned
	closeOnce sync.Once
	handlers  sync.WaitGroup // requests in progress

	mu            sync.Mutex
	closed        bool // set by Close
	lifetime      time.Duration
	counts        Counts
	tenants       map[string]*tenant // by path segment
	tenantsByID   map[string]*tenant // by tid
	clients       map[string]*client // registered confidential clients by ID
	users         map[userKey]User   // added users
	userCounts    map[userKey]*Counts
	codes         map[string]*authCode // authorization codes not yet redeemed
	nextCodeSweep time.Time
	nextUser      string                 // consumed by the next device code; "" for a generated user
	generated     int                    // how many usernames were generated
	devices       map[string]*deviceAuth // by device code
	userCodes     map[string]*deviceAuth // by user code
	issued        []*deviceAuth          // not yet approved/denied, in issue order (for Pending)
	grants        map[grantKey]string    // tenant+user+client -> refresh token
	refresh       map[string]grantKey    // refresh token -> tenant+user+client
	hold          *refreshHold           // see HoldRefreshes; nil: answers go at once
}

type grantKey struct{ tenant, username, clientID string }

type deviceAuth struct {
	deviceCode, userCode string
	tenant               *tenant
	clientID, username   string
	expires              time.Time
	approved, denied     bool
}

// Start starts a Server on 127.0.0.1 on a free port. Call [Server.Close] when
// done.
func Start(opts ...Option) (*Server, error) {
	cfg := config{tenant: DefaultTenant, tokenLifetime: time.Hour, now: time.Now}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	cert, certPEM, err := newCertificate(cfg.now())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakeidp: listen: %w", err)
	}
	sg, err := newSigner()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	s := &Server{
		cfg:         cfg,
		origin:      "https://" + ln.Addr().String(),
		certPEM:     certPEM,
		spki:        cert.Leaf.RawSubjectPublicKeyInfo,
		client:      newClient(roots),
		signer:      sg,
		served:      make(chan struct{}),
		lifetime:    cfg.tokenLifetime,
		tenants:     map[string]*tenant{},
		tenantsByID: map[string]*tenant{},
		clients:     map[string]*client{},
		users:       map[userKey]User{},
		userCounts:  map[userKey]*Counts{},
		codes:       map[string]*authCode{},
		devices:     map[string]*deviceAuth{},
		userCodes:   map[string]*deviceAuth{},
		grants:      map[grantKey]string{},
		refresh:     map[string]grantKey{},
	}
	def := s.addTenant(cfg.tenant)
	s.authority, s.tenantID = def.authority, def.id
	s.http = &http.Server{
		Handler:           s.routes(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(logWriter{cfg.logger}, "", 0),
	}
	tlsLn := tls.NewListener(ln, s.http.TLSConfig)
	go func() {
		defer close(s.served)
		// Serve returns http.ErrServerClosed after Close; nothing else to report.
		_ = s.http.Serve(tlsLn)
	}()
	return s, nil
}

// logWriter sends http.Server's error log lines to a slog.Logger.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Warn("fakeidp: server error", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// Close stops the server: it closes the listener and every connection, waits
// for the serving goroutine and for requests in progress (handlers never
// block, so this is quick), and closes the idle connections of
// [Server.HTTPClient]. Later requests fail. Close may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true // no handler starts after this
		hold := s.hold
		s.hold = nil
		s.mu.Unlock()
		// A held answer does not keep Close waiting.
		hold.release()
		_ = s.http.Close() // the only error is the listener's close error
		<-s.served
		s.handlers.Wait()
		s.client.CloseIdleConnections()
	})
}

// Authority is the authority URL of the default tenant to give MSAL:
// https://127.0.0.1:PORT/<tenant>. See also [Server.AddTenant].
func (s *Server) Authority() string { return s.authority }

// Tenant is the tenant path segment of the default tenant's authority.
func (s *Server) Tenant() string { return s.cfg.tenant }

// TenantID is the default tenant's ID in tokens (tid, and utid in
// client_info).
func (s *Server) TenantID() string { return s.tenantID }

// Origin is the server's base URL, https://127.0.0.1:PORT.
func (s *Server) Origin() string { return s.origin }

// SetTokenLifetime changes the lifetime of the access and ID tokens issued
// from now on, as [WithTokenLifetime] does at Start; tokens already issued
// keep theirs. A lifetime under a second is raised to a second.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = max(d, time.Second)
}

// HTTPClient returns an HTTP client that trusts the server's certificate. Every
// call returns the same client; do not change it.
func (s *Server) HTTPClient() *http.Client { return s.client }

// CertSPKIHash returns the base64 SHA-256 of the server certificate's
// SubjectPublicKeyInfo: what Chromium's --ignore-certificate-errors-spki-list
// takes, so that a browser trusts this server and nothing else it would not.
func (s *Server) CertSPKIHash() string {
	sum := sha256.Sum256(s.spki)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// CertPEM returns the server's self-signed certificate in PEM, for another
// process to trust: see [ClientFromPEM].
func (s *Server) CertPEM() []byte { return append([]byte(nil), s.certPEM...) }

// SetNextUser makes the next device code that the server issues belong to
// username (e.g. "alice@contoso.example"), instead of a generated user. It
// applies to one device code; an empty username restores the default. The
// same username always gives the same account.
func (s *Server) SetNextUser(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextUser = username
}

// Approve approves the device code login with the given user code, so that
// the client's next poll gets tokens. Approving an approved code does nothing.
// It returns an error wrapping [ErrUnknownUserCode] if there is no such
// pending code, and an error if the code was denied.
func (s *Server) Approve(userCode string) error {
	return s.decide(userCode, true)
}

// Deny declines the device code login with the given user code: the client's
// next poll gets the error authorization_declined.
func (s *Server) Deny(userCode string) error {
	return s.decide(userCode, false)
}

func (s *Server) decide(userCode string, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.userCodes[userCode]
	if !ok || !s.cfg.now().Before(d.expires) {
		return fmt.Errorf("%w: %q", ErrUnknownUserCode, userCode)
	}
	if d.approved == approve && d.denied == !approve {
		return nil
	}
	if d.approved || d.denied {
		return fmt.Errorf("fakeidp: user code %q was already decided", userCode)
	}
	d.approved, d.denied = approve, !approve
	s.dropIssued(d)
	return nil
}

// Pending returns the user codes that wait for [Server.Approve] or
// [Server.Deny], oldest first. Without [WithManualApproval] it is empty.
func (s *Server) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	var codes []string
	for _, d := range s.issued {
		if now.Before(d.expires) {
			codes = append(codes, d.userCode)
		}
	}
	return codes
}

func (s *Server) dropIssued(d *deviceAuth) {
	for i, x := range s.issued {
		if x == d {
			s.issued = append(s.issued[:i], s.issued[i+1:]...)
			return
		}
	}
}

// discardBody is used where a handler does not read the request body.
func discardBody(r *http.Request) { _, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16)) }
