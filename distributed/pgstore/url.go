package pgstore

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache/internal/redact"
)

// parseURL parses a postgres:// or postgresql:// URL into a pool
// configuration. The user information is split off first, at the last "@",
// so that a password holding "/", "?", "#" or "@" (not percent-encoded) is
// still read whole, and pgx parses a URL that holds no password: no error
// message can contain a piece of it. It also returns the URL with the
// password replaced, for messages.
func parseURL(raw string, dialTimeout time.Duration) (*pgxpool.Config, string, error) {
	redacted := redactURL(raw)
	bad := func(format string, args ...any) (*pgxpool.Config, string, error) {
		return nil, redacted, fmt.Errorf("pgstore: URL %q: %s", redacted, fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return bad("no scheme: want postgres://user:password@host:port/database")
	}
	if scheme != "postgres" && scheme != "postgresql" {
		return bad("scheme %q: want postgres:// or postgresql://", scheme)
	}
	var user, password string
	var hasUser, hasPassword bool
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		var u, p string
		u, p, hasPassword = strings.Cut(rest[:at], ":")
		user, password, hasUser = unescape(u), unescape(p), u != ""
		rest = rest[at+1:]
	}
	if strings.Contains(rest, "#") {
		return bad("unexpected fragment")
	}
	cfg, err := pgxpool.ParseConfig(scheme + "://" + rest)
	if err != nil {
		return bad("%v", unwrapParse(err))
	}
	if hasUser {
		cfg.ConnConfig.User = user
	}
	if hasPassword {
		cfg.ConnConfig.Password = password
	}
	cfg.ConnConfig.ConnectTimeout = dialTimeout
	return cfg, redacted, nil
}

// unwrapParse returns the reason of a pgx parse error without the URL it
// repeats.
func unwrapParse(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		err = u.Unwrap()
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// unescape decodes percent-encoding, or returns s as it is when it is not
// valid percent-encoding (a password with a bare "%").
func unescape(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// passwordParam is a password given as a query parameter, which pgx
// also reads.
var passwordParam = regexp.MustCompile(`([?&]password=)[^&]*`)

// redactURL replaces the password of a URL with "xxxxx", in its user
// information and in a password= parameter.
func redactURL(raw string) string {
	return redact.URL(passwordParam.ReplaceAllString(raw, "${1}xxxxx"))
}
