package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// A target is what a URL names.
type target struct {
	addrs          []string // host:port, the first from the URL's host
	host           string   // the URL's host, for TLS verification
	user, password string
	db             int
	tls            bool
	redacted       string // the URL without its password, for messages
}

// parseURL parses the URL forms documented on Open. Its errors never
// contain the password.
func parseURL(raw string) (target, error) {
	var t target
	t.redacted = redact(raw)
	bad := func(format string, args ...any) (target, error) {
		return target{}, fmt.Errorf("redisstore: URL %q: %s", t.redacted, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, password included
		}
		return bad("%v", err)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		t.tls = true
	case "":
		return bad("no scheme: want redis://host:port or rediss://host:port")
	default:
		return bad("scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("no host: want %s://host:port", u.Scheme)
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
	if u.User != nil {
		t.user = u.User.Username()
		t.password, _ = u.User.Password()
	}
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
		if k != "addr" {
			return bad("unknown parameter %q: only addr=host:port (more Redis Cluster nodes) is understood", k)
		}
		for _, v := range vs {
			addr, err := hostPort(v)
			if err != nil {
				return bad("addr=%s: %v", v, err)
			}
			t.addrs = append(t.addrs, addr)
		}
	}
	if len(t.addrs) > 1 && t.db != 0 {
		return bad("database %d with addr=: Redis Cluster has only database 0", t.db)
	}
	return t, nil
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

// redact replaces the password of a URL, parseable or not, with "xxxxx".
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
