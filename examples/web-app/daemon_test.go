//go:build !windows

// The daemon test runs a real redis-server, which Wine does not have.

package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/redistest"
)

// TestDaemonTenantsRedisRestart runs the daemon for three tenants on Redis:
// one token request per tenant, later rounds served from the cache, and the
// daemon goes on through a Redis kill and restart, on the tokens it holds.
func TestDaemonTenantsRedisRestart(t *testing.T) {
	redistest.Require(t)
	redis := redistest.Start(t)
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	tenants := []string{"contoso-daemon", "fabrikam-daemon", "northwind-daemon"}
	for _, tn := range tenants {
		if _, err := idp.AddTenant(tn); err != nil {
			t.Fatal(err)
		}
	}
	if err := idp.RegisterClient(fakeidp.ConfidentialClient{ID: testClientID, Secret: testSecret}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(caFile, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(randomKey())
	d := start(t, []string{envClientSecret + "=" + testSecret, envKey + "=" + key},
		"daemon", "--client-id", testClientID, "--authority", idp.Authority(), "--ca-file", caFile,
		"--tenants", strings.Join(tenants, ","), "--scopes", fakeidp.MeResource+"/.default",
		"--redis", redis.URL(), "--interval", "200ms")

	roundsDone := func(n int) func() bool {
		return func() bool { return strings.Count(d.stdout.String(), "\nround ") >= n*len(tenants) }
	}
	waitFor(t, 30*time.Second, "three rounds", roundsDone(3))
	redis.Kill()
	down := len(d.stdout.String())
	mark := strings.Count(d.stdout.String(), "\nround ")
	waitFor(t, 30*time.Second, "three rounds with Redis down", func() bool {
		return strings.Count(d.stdout.String(), "\nround ") >= mark+3*len(tenants)
	})
	outage := d.stdout.String()[down:]
	redis.Restart()
	mark = strings.Count(d.stdout.String(), "\nround ")
	waitFor(t, 30*time.Second, "three rounds after the restart", func() bool {
		return strings.Count(d.stdout.String(), "\nround ") >= mark+3*len(tenants)
	})
	if code := d.stop(t); code != exitOK {
		t.Errorf("daemon exited %d after SIGINT", code)
	}
	out := d.stdout.String()
	t.Logf("daemon output (first lines):\n%s", firstLines(out, 8))
	if strings.Contains(out, "FAILED") {
		t.Errorf("a round failed:\n%s", out)
	}
	if strings.Contains(outage, "identity provider") {
		t.Errorf("with Redis down, tokens came from the identity provider, not from memory:\n%s", outage)
	}
	for _, tn := range tenants {
		// The restarted Redis is empty (no persistence): the cache may see
		// the partition gone and ask once more. Never more than that.
		n := idp.TenantRequests(tn)
		if n.ClientCredentialsGrant < 1 || n.ClientCredentialsGrant > 2 {
			t.Errorf("tenant %s: %d client credentials requests, want 1, or 2 after Redis came back empty", tn, n.ClientCredentialsGrant)
		}
		lines := regexp.MustCompile(`(?m)^round \d+ +`+regexp.QuoteMeta(tn)+` +token from (cache|identity provider)`).FindAllStringSubmatch(out, -1)
		fromIdP := 0
		for _, l := range lines {
			if l[1] == "identity provider" {
				fromIdP++
			}
		}
		if len(lines) < 9 || lines[0][1] != "identity provider" || lines[len(lines)-1][1] != "cache" || fromIdP != n.ClientCredentialsGrant {
			t.Errorf("tenant %s: %d rounds (want 9 or more), %d from the identity provider (it counted %d), the first from the identity provider and the last from the cache",
				tn, len(lines), fromIdP, n.ClientCredentialsGrant)
		}
	}
	noLeaks(t, "the daemon's output", []byte(out+d.stderr.String()), testSecret, key)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
