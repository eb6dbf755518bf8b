package redisstore

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseURL: parseURL never panics, reads the password whole, and no
// error shows it.
func FuzzParseURL(f *testing.F) {
	f.Add("user", "secret", "host:6379/0")
	f.Add("", "p/a?s#s", "h1:1?addr=h2:2&addr=h3:3")
	f.Add("u", "x%41", "[::1]:7000")
	f.Add("u", "pw", "h:1/2@h:3#f")
	f.Add("u", "pw", "s1:26379/1?addr=s2:26379&master_set=mymaster")
	f.Fuzz(func(t *testing.T, user, password, tail string) {
		const marker = "Zq9"
		if strings.Contains(user+tail, marker) {
			return
		}
		password = marker + password
		raw := "redis://" + user + ":" + password + "@" + tail
		tgt, err := parseURL(raw)
		if err != nil {
			if strings.Contains(err.Error(), marker) {
				t.Fatalf("parseURL(%q): the error shows the password: %v", raw, err)
			}
			return
		}
		if strings.Contains(tgt.redacted, marker) {
			t.Fatalf("parseURL(%q): redacted %q shows the password", raw, tgt.redacted)
		}
		if !strings.Contains(user, ":") && !strings.Contains(tail, "@") {
			want := password
			if d, err := url.PathUnescape(password); err == nil {
				want = d
			}
			if tgt.password != want {
				t.Fatalf("parseURL(%q): password %q, want %q", raw, tgt.password, want)
			}
		}
	})
}
