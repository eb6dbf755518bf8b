package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/msalcache/msalcache/internal/fakeidp"
)

// idpOptions are the flags of the idp command.
type idpOptions struct {
	users    string
	replicas string
	dir      string
	redis    string
}

// defaultIDPReplicas are the addresses the idp command registers redirect
// URLs for, and prints serve command lines for.
const defaultIDPReplicas = "127.0.0.1:8081,127.0.0.1:8082"

func cmdIDP(ctx context.Context, e *env, args []string) error {
	var o idpOptions
	f := newFlags(e, "idp", "[flags]", `
Runs the LOCAL DEMO identity provider on its own, on 127.0.0.1, so that you can
start replicas of 'web-app serve' yourself without a Microsoft Entra account.
It is not Microsoft Entra ID: it signs in the users of --users without a
password, and its tokens are worthless anywhere else.

It registers an application (a client ID and a fresh client secret) with a
redirect URL for each address of --replicas, writes its TLS certificate to a CA
file (0600, in a 0700 directory), and prints the authority, the client ID, the
secret, the CA file and, for each replica, the exact 'web-app serve' command
line to run. Anyone who can read the output can use the secret: it is a demo.
It runs until Ctrl-C or SIGTERM, then removes the files it wrote.

Example:
  web-app idp                               # then run the printed commands
  web-app idp --replicas 127.0.0.1:9001,127.0.0.1:9002 --redis redis://127.0.0.1:6379`)
	f.fs.StringVar(&o.users, "users", demoUser+",bob@contoso.example", "the usernames that can sign in, separated by commas")
	f.fs.StringVar(&o.replicas, "replicas", defaultIDPReplicas, "the listen addresses (host:port) of the replicas to register, separated by commas")
	f.fs.StringVar(&o.dir, "dir", "", "write the CA file in this directory, created 0700 (default: a temporary one, removed at exit)")
	f.fs.StringVar(&o.redis, "redis", "redis://127.0.0.1:6379", "the Redis URL to put in the printed serve command lines (empty: the memory store, one replica)")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	users := splitList(o.users)
	if len(users) == 0 {
		return usageError("--users is empty")
	}
	addrs := splitList(o.replicas)
	if len(addrs) == 0 {
		return usageError("--replicas is empty")
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
			return usageError("--replicas: %q is not host:port", a)
		}
	}
	return runIDP(ctx, e, &o, users, addrs)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func runIDP(ctx context.Context, e *env, o *idpOptions, users, addrs []string) error {
	dir, cleanup, err := idpDir(o.dir)
	if err != nil {
		return err
	}
	defer cleanup()

	hint := "This demo identity provider signs in " + strings.Join(users, ", ") + " (web-app idp --users sets them)"
	idp, err := fakeidp.Start(fakeidp.WithTenant(demoTenant), fakeidp.WithUnknownUserHint(hint))
	if err != nil {
		return err
	}
	defer idp.Close()
	for _, u := range users {
		if _, err := idp.AddUser(demoTenant, u); err != nil {
			return usageError("--users: %v", err)
		}
	}
	var redirects []string
	for _, a := range addrs {
		redirects = append(redirects, "http://"+a+"/callback")
	}
	secret := randomString(24)
	if err := idp.RegisterClient(fakeidp.ConfidentialClient{ID: demoClientID, Secret: secret, RedirectURIs: redirects}); err != nil {
		return usageError("--replicas: %v", err)
	}
	caFile := filepath.Join(dir, "idp.pem")
	if err := os.WriteFile(caFile, idp.CertPEM(), 0o600); err != nil {
		return err
	}
	key := base64.StdEncoding.EncodeToString(randomKey())

	w := e.stdout
	fmt.Fprintf(w, "Local DEMO identity provider (not Microsoft Entra ID; it signs in the users below, with no password)\n")
	fmt.Fprintf(w, "  authority:     %s\n", idp.Authority())
	fmt.Fprintf(w, "  client id:     %s\n", demoClientID)
	fmt.Fprintf(w, "  client secret: %s\n", secret)
	fmt.Fprintf(w, "  CA file:       %s\n", caFile)
	fmt.Fprintf(w, "  scopes:        %s\n", fakeidp.MeScope)
	fmt.Fprintf(w, "  API URL:       %s\n", idp.MeURL())
	fmt.Fprintf(w, "  users:         %s\n", strings.Join(users, ", "))
	store := "--redis " + shellQuote(o.redis)
	if o.redis == "" {
		// Replicas share nothing on the memory store: one is the story.
		store, addrs = "--store memory", addrs[:1]
		fmt.Fprintf(w, "\nStart the replica (the memory store is one process's; give --redis for two):\n")
	} else {
		fmt.Fprintf(w, "\nStart the replicas, each in its own terminal (one WEBAPP_KEY for all of them):\n")
	}
	for i, a := range addrs {
		fmt.Fprintf(w, "  %s=%s %s=%s web-app serve --client-id %s --authority %s --ca-file %s --scopes %s --api-url %s --addr %s --redirect-url %s --name %s %s\n",
			envClientSecret, shellQuote(secret), envKey, shellQuote(key), demoClientID, shellQuote(idp.Authority()),
			shellQuote(caFile), shellQuote(fakeidp.MeScope), shellQuote(idp.MeURL()), shellQuote(a),
			shellQuote(redirects[i]), replicaName(i), store)
	}
	fmt.Fprintf(w, "\nThen open http://%s and sign in as %s. Ctrl-C stops the identity provider.\n", addrs[0], users[0])
	<-ctx.Done()
	fmt.Fprintf(w, "\nStopping the identity provider; %s removed.\n", removedWhat(o.dir, dir, caFile))
	return nil
}

// replicaName is A, B, ... Z, then R27, R28, ...
func replicaName(i int) string {
	if i < 26 {
		return string(rune('A' + i))
	}
	return fmt.Sprintf("R%d", i+1)
}

func removedWhat(given, dir, caFile string) string {
	if given == "" {
		return dir
	}
	return caFile
}

// idpDir returns the directory for the CA file: dir created 0700 (or
// checked to be a directory that only its owner can enter), or a new
// temporary one; cleanup removes what was created.
func idpDir(dir string) (string, func(), error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "web-app-idp-") // 0700
		if err != nil {
			return "", nil, err
		}
		return tmp, func() { os.RemoveAll(tmp) }, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", nil, err
	}
	if !fi.IsDir() {
		return "", nil, usageError("--dir %q is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return "", nil, usageError("--dir %q: mode %v lets other users in; want 0700 (chmod 700)", dir, perm)
	}
	caFile := filepath.Join(dir, "idp.pem")
	return dir, func() { os.Remove(caFile) }, nil
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe
// characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@,=+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
