package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/msalcache/msalcache/internal/redact"
)

// A target is what a URL names.
type target struct {
	addrs          []string // host:port, the first from the URL's host
	masterSet      string   // Sentinel: the master's name; addrs are the sentinels'
	host           string   // the URL's host, for TLS verification
	user, password string
	db             int
	tls            bool
	redacted       string // the URL without its password, for messages
}

// parseURL parses the URL forms documented on Open. The user information
// is split off first, at the last "@", so that a password holding "/", "?",
// "#" or "@" (not percent-encoded) is still read whole and no other part of
// the URL, and so no error message, can contain a piece of it.
func parseURL(raw string) (target, error) {
	var t target
	t.redacted = redact.URL(raw)
	bad := func(format string, args ...any) (target, error) {
		return target{}, fmt.Errorf("redisstore: URL %q: %s", t.redacted, fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case !ok:
		return bad("no scheme: want redis://host:port or rediss://host:port")
	case scheme == "redis":
	case scheme == "rediss":
		t.tls = true
	default:
		return bad("scheme %q: want redis:// or rediss://", scheme)
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, password, _ := strings.Cut(rest[:at], ":")
		t.user, t.password = unescape(user), unescape(password)
		rest = rest[at+1:]
	}
	u, err := url.Parse(scheme + "://" + rest)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return bad("%v", err)
	}
	if u.Host == "" {
		return bad("no host: want %s://host:port", scheme)
	}
	if u.Fragment != "" {
		return bad("unexpected fragment #%s", u.Fragment)
	}
	addr, err := hostPort(u.Host)
	if err != nil {
		return bad("%v", err)
	}
	t.host = u.Hostname()
	t.addrs = []string{addr}
	if p := strings.TrimPrefix(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil || db < 0 {
			return bad("path %q: want a database number, as in redis://host:port/2", u.Path)
		}
		t.db = db
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	for k, vs := range query {
		switch k {
		case "addr":
			for _, v := range vs {
				addr, err := hostPort(v)
				if err != nil {
					return bad("addr=%s: %v", v, err)
				}
				t.addrs = append(t.addrs, addr)
			}
		case "master_set":
			if len(vs) != 1 || vs[0] == "" {
				return bad("master_set: want one name, the master's as the sentinels know it")
			}
			t.masterSet = vs[0]
		default:
			return bad("unknown parameter %q: only addr=host:port (more Redis Cluster nodes, or sentinels) and master_set=name (Redis Sentinel) are understood", k)
		}
	}
	if len(t.addrs) > 1 && t.db != 0 && t.masterSet == "" {
		return bad("database %d with addr=: Redis Cluster has only database 0 (with Sentinel, add master_set=name)", t.db)
	}
	return t, nil
}

// unescape decodes percent-encoding, or returns s as it is when it is not
// valid percent-encoding (a password with a bare "%").
func unescape(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// hostPort checks host[:port] and adds the default port.
func hostPort(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port (or a bare IPv6 address in brackets).
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "6379"
	}
	if host == "" {
		return "", fmt.Errorf("no host in %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}
