//go:build !windows

// `web-app serve` processes on a real PostgreSQL, alone and behind Redis.
// Not under Wine: no PostgreSQL or redis-server there.

package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/pgtest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// signInOnProcesses signs alice in on replica A, then checks that replica B
// serves the API page from the shared store with no token request, and
// returns the browser and a site over the processes.
func signInOnProcesses(t *testing.T, rp *replicaProcs) (*site, *browser) {
	t.Helper()
	s := &site{idp: rp.idp, replicas: [2]*replica{{url: rp.urls[0]}, {url: rp.urls[1]}}}
	b := s.newBrowser(t)
	s.signIn(t, b, s.a(), "alice@contoso.example")
	return s, b
}

// meWithoutTokenRequest checks that replica r serves /me to b with no
// request to the identity provider's token endpoint.
func meWithoutTokenRequest(t *testing.T, s *site, b *browser, r *replica, when string) {
	t.Helper()
	before := s.idp.Requests()
	me := b.get(r.url + "/me")
	if me.status != http.StatusOK || !strings.Contains(me.body, "the shared token cache") {
		t.Fatalf("/me on %s %s: %d %q\n%s", r.url, when, me.status, me.title(), me.body)
	}
	if n := s.idp.Requests().Sub(before); n.Token != 0 {
		t.Errorf("/me on %s %s: %d token requests, want 0", r.url, when, n.Token)
	}
}

// TestServePostgres: two `web-app serve --postgres` processes: a sign-in
// on A, the API page on B from the tokens in PostgreSQL, sign-out on B ends
// the session on A too.
func TestServePostgres(t *testing.T) {
	pg := pgtest.Start(t)
	rp := startReplicasOn(t, "--postgres", pg.URL())
	for _, p := range rp.procs {
		waitFor(t, 10*time.Second, "the replica says its store", func() bool {
			return strings.Contains(p.stdout.String(), "postgres store")
		})
	}
	s, b := signInOnProcesses(t, rp)
	if n, err := pg.QueryInt("SELECT count(*) FROM msalcache_entries"); err != nil || n == 0 {
		t.Fatalf("PostgreSQL holds %d rows after a sign-in (%v)", n, err)
	}
	meWithoutTokenRequest(t, s, b, s.b(), "after the sign-in on A")
	out := b.do(http.MethodPost, s.b().url+"/signout", url.Values{})
	if out.title() != "Signed out" {
		t.Fatalf("sign-out on B: %d %q", out.status, out.title())
	}
	if home := b.get(s.a().url + "/"); home.title() == "Signed in" {
		t.Error("replica A still shows the user signed in after the sign-out on B")
	}
	for i, p := range rp.procs {
		if code := p.stop(t); code != exitOK {
			t.Errorf("replica %d exited %d after SIGINT:\n%s", i, code, p.stderr)
		}
		noLeaks(t, "replica logs", []byte(p.stdout.String()+p.stderr.String()), testSecret, rp.key)
	}
}

// TestServeRedisPostgres: two `web-app serve --redis --postgres`
// processes: after a sign-in on A, Redis is flushed (as a restart without
// persistence or a failover to an empty replica would), and B still serves
// the user with no token request: the tokens and the session come from
// PostgreSQL.
func TestServeRedisPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	redis := redistest.Start(t)
	rp := startReplicasOn(t, "--redis", redis.URL(), "--postgres", pg.URL())
	for _, p := range rp.procs {
		waitFor(t, 10*time.Second, "the replica says its store", func() bool {
			return strings.Contains(p.stdout.String(), "redis+postgres store")
		})
	}
	s, b := signInOnProcesses(t, rp)
	if _, err := redis.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	meWithoutTokenRequest(t, s, b, s.b(), "after Redis was flushed")
	meWithoutTokenRequest(t, s, b, s.a(), "after Redis was flushed")
}
