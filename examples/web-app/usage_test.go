package main

import (
	"context"
	"strings"
	"testing"
)

// TestUsage checks argument handling, environment variables and --help.
func TestUsage(t *testing.T) {
	ctx := context.Background()
	key := "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
	app := []string{"--client-id", "x", "--client-secret", "s"}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		stderr string
	}{
		{"no command", nil, nil, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"no client id", nil, []string{"serve"}, "--client-id is required"},
		{"no credential", nil, []string{"serve", "--client-id", "x"}, "a credential is required"},
		{"secret and certificate", nil, []string{"serve", "--client-id", "x", "--client-secret", "s", "--client-cert", "c.pem"}, "not both"},
		{"tenant and authority", nil, append([]string{"serve", "--tenant", "t", "--authority", "https://127.0.0.1:1/t"}, app...), "not both"},
		{"http authority", nil, append([]string{"serve", "--authority", "http://127.0.0.1:1/t"}, app...), "want an https URL"},
		{"redis without key", nil, append([]string{"serve", "--redis", "redis://127.0.0.1:1"}, app...), "--key (or WEBAPP_KEY) is required with Redis"},
		{"store redis without URL", nil, append([]string{"serve", "--store", "redis"}, app...), "--store redis needs --redis"},
		{"memory and redis", nil, append([]string{"serve", "--store", "memory", "--redis", "redis://x:1"}, app...), "choose one"},
		{"bad store", nil, append([]string{"serve", "--store", "disk"}, app...), `want memory, redis, postgres or redis+postgres`},
		{"postgres without key", nil, append([]string{"serve", "--postgres", "postgres://127.0.0.1:1/db"}, app...), "--key (or WEBAPP_KEY) is required with Redis or PostgreSQL"},
		{"store postgres without URL", nil, append([]string{"serve", "--store", "postgres"}, app...), "--store postgres needs --postgres"},
		{"tandem without postgres", nil, append([]string{"serve", "--store", "redis+postgres", "--redis", "redis://x:1"}, app...), "--store redis+postgres needs --postgres"},
		{"redis store and postgres URL", nil, append([]string{"serve", "--store", "redis", "--redis", "redis://x:1", "--postgres", "postgres://x:1/db"}, app...), "choose one"},
		{"bad key", nil, append([]string{"serve", "--key", "short"}, app...), "base64 of 32 random bytes"},
		{"bad key from env", map[string]string{envKey: "short"}, append([]string{"serve"}, app...), "base64 of 32 random bytes"},
		{"bad redirect", nil, append([]string{"serve", "--key", key, "--redirect-url", "http://h/cb"}, app...), "ending in /callback"},
		{"tls cert without key", nil, append([]string{"serve", "--tls-cert", "c.pem"}, app...), "go together"},
		{"bad duration env", map[string]string{envCacheTTL: "soon"}, append([]string{"serve"}, app...), `WEBAPP_CACHE_TTL="soon"`},
		{"zero store timeout", nil, append([]string{"serve", "--store-timeout", "0s"}, app...), "--store-timeout 0s: want a positive duration"},
		{"daemon without tenants", nil, append([]string{"daemon"}, app...), "--tenants is required"},
		{"daemon bad interval", nil, append([]string{"daemon", "--tenants", "a", "--interval", "0s"}, app...), "--interval must be positive"},
		{"extra argument", nil, append([]string{"serve", "now"}, app...), `unexpected argument "now"`},
		{"unknown flag", nil, []string{"demo", "--frob"}, "flag provided but not defined"},
		{"demo bad store", nil, []string{"demo", "--store", "disk"}, "want auto, redis or memory"},
		{"secret from env", map[string]string{envClientID: "x", envClientSecret: "s", envStore: "disk"}, []string{"serve"}, "want memory, redis, postgres or redis+postgres"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runIn(ctx, tc.env, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, want %d; stderr %q, want it to contain %q", code, exitUsage, stderr, tc.stderr)
			}
		})
	}
	for _, cmd := range []string{"--help", "serve", "daemon", "demo"} {
		t.Run("help "+cmd, func(t *testing.T) {
			args := []string{cmd, "--help"}
			if cmd == "--help" {
				args = args[:1]
			}
			code, stdout, _ := runIn(ctx, map[string]string{envClientSecret: "do-not-show-me"}, args...)
			if code != exitOK || !strings.Contains(stdout, "Usage") || !strings.Contains(stdout, "Exit status") {
				t.Errorf("exit %d, stdout:\n%s", code, stdout)
			}
			if strings.Contains(stdout, "do-not-show-me") {
				t.Error("--help shows the client secret from the environment")
			}
			if (cmd == "serve" || cmd == "daemon") && !strings.Contains(stdout, "(env WEBAPP_") {
				t.Errorf("--help does not name the environment variables:\n%s", stdout)
			}
		})
	}
}
