package pgstore

import (
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for raw, want := range map[string]string{
		"postgres://me:p/a?s#s@w:rd@host:1/db": "p/a?s#s@w:rd",
		"postgresql://me:p%2Fa%40b@host:1/db":  "p/a@b",
		"postgres://me:100%@host:1/db":         "100%",
	} {
		cfg, redacted, err := parseURL(raw, time.Second)
		if err != nil {
			t.Errorf("parseURL(%q): %v", raw, err)
			continue
		}
		if cc := cfg.ConnConfig; cc.User != "me" || cc.Password != want || cc.Host != "host" || cc.Port != 1 || cc.Database != "db" {
			t.Errorf("parseURL(%q) = user %q, password %q, %s:%d/%s; want password %q", raw, cc.User, cc.Password, cc.Host, cc.Port, cc.Database, want)
		}
		if strings.Contains(redacted, want) || !strings.Contains(redacted, "me:xxxxx@") {
			t.Errorf("parseURL(%q): redacted %q", raw, redacted)
		}
		if cfg.ConnConfig.ConnectTimeout != time.Second {
			t.Errorf("parseURL(%q): connect timeout %v", raw, cfg.ConnConfig.ConnectTimeout)
		}
	}
	if r := redactURL("postgres://h/db?sslmode=disable&password=s3cret&x=1"); strings.Contains(r, "s3cret") {
		t.Errorf("redact kept a password= parameter: %q", r)
	}
}

// TestOpenBadURL: a malformed URL or a bad option is a clear error, before
// any connection, that never shows the password.
func TestOpenBadURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "no scheme"},
		{"localhost:5432", "no scheme"},
		{"mysql://u:s3cret@localhost:5432/db", `scheme "mysql"`},
		{"postgres://u:s3cret@host:notaport/db", "port"},
		{"postgres://u:s3cret@host:5432/db?sslmode=bogus", "sslmode"},
		{"postgres://u:s3cr/et@host:x/db", "postgres://u:xxxxx@host:x/db"},
		{"postgres://u:s3cret@host:1/db#frag", "fragment"},
		{"postgres://u:s3cret@[::1/db", "postgres://u:xxxxx@"},
	} {
		s, err := Open(tc.url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("Open(%q) = %v: the error shows the password", tc.url, err)
		}
	}
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithTable("Bad-Name"), "WithTable"},
		{WithTable(""), "WithTable"},
		{WithCleanupInterval(-time.Second), "WithCleanupInterval"},
		{WithDialTimeout(0), "WithDialTimeout"},
		{WithHealthTimeout(time.Millisecond), "WithHealthTimeout"},
		{WithLogger(nil), "WithLogger"},
	} {
		if _, err := Open("postgres://u:s3cret@localhost:1/db", tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open with a bad %s = %v", tc.want, err)
		}
	}
}

// FuzzParseURL: parseURL never panics, reads the password whole, and no
// error shows it.
func FuzzParseURL(f *testing.F) {
	f.Add("user", "secret", "host:5432/db")
	f.Add("", "p/a?s#s", "h1:1,h2:2/db?sslmode=disable")
	f.Add("u", "x%41", "[::1]:5432/db")
	f.Add("u", "pw", "h:1/2@h:3#f")
	f.Fuzz(func(t *testing.T, user, password, tail string) {
		const marker = "Zq9"
		if strings.Contains(user+tail, marker) {
			return
		}
		password = marker + password
		raw := "postgres://" + user + ":" + password + "@" + tail
		cfg, redacted, err := parseURL(raw, time.Second)
		if strings.Contains(redacted, marker) {
			t.Fatalf("parseURL(%q): redacted %q shows the password", raw, redacted)
		}
		if err != nil {
			if strings.Contains(err.Error(), marker) {
				t.Fatalf("parseURL(%q): the error shows the password: %v", raw, err)
			}
			return
		}
		if !strings.Contains(user, ":") && !strings.Contains(tail, "@") {
			want := unescape(password)
			if cfg.ConnConfig.Password != want {
				t.Fatalf("parseURL(%q): password %q, want %q", raw, cfg.ConnConfig.Password, want)
			}
		}
	})
}
