//go:build !windows

package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redistest"
)

// TestServeWhileRedisDown: `web-app serve` starts while its Redis is down
// (two replicas, as separate processes), refuses a sign-in with a clear
// "try again later" meanwhile, and serves sign-ins, and the session on
// the other replica, once Redis answers on that address.
func TestServeWhileRedisDown(t *testing.T) {
	redistest.Require(t)
	redis := redistest.Start(t)
	redis.Kill()
	rp := startReplicas(t, redis) // fails if a replica exits
	s := &site{idp: rp.idp, replicas: [2]*replica{{url: rp.urls[0]}, {url: rp.urls[1]}}}

	bob := s.newBrowser(t)
	resp := bob.get(s.consent(t, s.authorize(t, bob, s.a()), "bob@contoso.example"))
	if resp.status != http.StatusServiceUnavailable || !strings.Contains(resp.body, "Try again later") {
		t.Errorf("sign-in with Redis down: %d %q\n%s", resp.status, resp.title(), resp.body)
	}

	redis.Restart()
	carol := s.newBrowser(t)
	waitFor(t, 30*time.Second, "a sign-in to work once Redis is up", func() bool {
		cb := s.consent(t, s.authorize(t, carol, s.a()), "carol@contoso.example")
		return carol.get(cb).status == http.StatusSeeOther
	})
	for _, r := range s.replicas {
		if resp := carol.get(r.url + "/me"); resp.status != http.StatusOK || !strings.Contains(resp.body, "carol@contoso.example") {
			t.Errorf("/me on %s after the sign-in: %d %q", r.url, resp.status, resp.title())
		}
	}
	for _, p := range rp.procs {
		if code := p.stop(t); code != 0 {
			t.Errorf("serve exited %d: %s", code, p.stderr)
		}
		if log := p.stderr.String(); !strings.Contains(log, "does not answer yet") {
			t.Errorf("serve did not log that Redis does not answer:\n%s", log)
		}
	}
}
