//go:build !windows

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/pgstore"
	"github.com/msalcache/msalcache/distributed/redisstore"
	"github.com/msalcache/msalcache/internal/appkey"
	"github.com/msalcache/msalcache/internal/pgtest"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/redistest"
	"github.com/msalcache/msalcache/internal/seal"
)

// TestCommand runs the command on a tandem (real Redis and PostgreSQL):
// stopped at --limit and continued from the printed cursor, it rewrites
// every partition sealed with the old key and leaves the one it cannot
// open; a dry run then counts 0 old; the output shows no key and no URL.
func TestCommand(t *testing.T) {
	const table, prefix, partitions = "reseal_cmd", "cmd:", 12
	redisURL, pgURL := redistest.Start(t).URL(), pgtest.Start(t).URL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := redisstore.Open(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgstore.Open(pgURL, pgstore.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	store := distributed.Tiered(r, p)
	defer store.Close()

	raw := func() []byte {
		k := make([]byte, 32)
		rand.Read(k)
		return k
	}
	kOld, kNew, kStray := raw(), raw(), raw()
	sealer := func(k ...[]byte) *seal.Keys {
		s, err := seal.New(k...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	put := func(i int, keys *seal.Keys) string {
		skey := recordfmt.StoreKey(prefix, fmt.Sprintf("partition-%d", i))
		h := recordfmt.Header{Gen: uint64(i + 1), Removed: i == 0}
		js := []byte(fmt.Sprintf(`{"AccessToken":{"n%d":{}}}`, i))
		if h.Removed {
			js = nil
		}
		if err := store.Store(ctx, skey, recordfmt.Seal(h, js, skey, keys), 0, distributed.NewVersion(), time.Hour); err != nil {
			t.Fatal(err)
		}
		return skey
	}
	var skeys []string
	for i := range partitions {
		skeys = append(skeys, put(i, sealer(kOld)))
	}
	strayKey := put(partitions, sealer(kStray))
	strayBefore, _, _ := store.Load(ctx, strayKey)

	keysFile := filepath.Join(t.TempDir(), "keys")
	b64 := func(k []byte) string { return base64.StdEncoding.EncodeToString(k) }
	if err := os.WriteFile(keysFile, []byte(b64(kNew)+"\n"+b64(kOld)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{envRedis: redisURL, envPostgres: pgURL}
	cmd := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append([]string{"--keys-file", keysFile, "--prefix", prefix, "--table", table, "--batch", "4"}, args...)
		code := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
		all := out.String() + errOut.String()
		for _, secret := range []string{b64(kNew), b64(kOld), redisURL, pgURL} {
			if strings.Contains(all, secret) {
				t.Errorf("the output shows a key or a URL:\n%s", all)
			}
		}
		if code != 0 {
			t.Fatalf("reseal %q: exit %d\n%s", args, code, all)
		}
		return out.String()
	}
	count := func(out, name string) int {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + name + ` +(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %q in the output:\n%s", name, out)
		}
		var n int
		fmt.Sscan(m[1], &n)
		return n
	}

	first := cmd("--limit", "5")
	m := regexp.MustCompile(`--cursor '([^']*)'`).FindStringSubmatch(first)
	if m == nil || count(first, "visited") < 5 || count(first, "visited") >= partitions {
		t.Fatalf("a run limited to 5 printed no cursor or visited the wrong number:\n%s", first)
	}
	rest := cmd("--cursor", m[1])
	if !strings.Contains(rest, "done:") {
		t.Fatalf("the continued run did not finish:\n%s", rest)
	}
	resealed := count(first, "resealed") + count(rest, "resealed")
	if resealed != partitions || count(first, "no-key")+count(rest, "no-key") != 1 || count(first, "tombstones")+count(rest, "tombstones") != 1 {
		t.Errorf("the two runs:\n%s\n%s\nwant %d resealed, 1 no-key, 1 tombstone", first, rest, partitions)
	}
	dry := cmd("--dry-run")
	if count(dry, "old-key") != 0 || count(dry, "current") != partitions || count(dry, "no-key") != 1 {
		t.Errorf("the dry run after:\n%s\nwant old-key 0, current %d, no-key 1", dry, partitions)
	}
	newOnly := sealer(kNew)
	for i, skey := range skeys {
		v, _, err := store.Load(ctx, skey)
		if err != nil {
			t.Fatal(err)
		}
		h, js, err := recordfmt.Open(v, skey, newOnly)
		want := fmt.Sprintf(`{"AccessToken":{"n%d":{}}}`, i)
		if i == 0 {
			want = ""
		}
		if err != nil || h.Gen != uint64(i+1) || h.Removed != (i == 0) || string(js) != want {
			t.Errorf("partition %d after the run: %+v %q %v; want gen %d, the same JSON, open with the new key", i, h, js, err, i+1)
		}
	}
	if after, _, _ := store.Load(ctx, strayKey); !bytes.Equal(after, strayBefore) {
		t.Error("the partition sealed with a key not given was changed")
	}
}

// TestWebApp: with --web-app, the keys given are the web app's, and the
// partitions sealed with the key it derives from the old one for its token
// cache are resealed with the one it derives from the new one.
func TestWebApp(t *testing.T) {
	const prefix = "webapp-reseal:"
	redisURL := redistest.Start(t).URL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := redisstore.Open(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kOld, kNew := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	derived := func(k []byte) *seal.Keys {
		s, err := seal.New(appkey.Derive([][]byte{k}, appkey.Tokens)...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	skey := recordfmt.StoreKey(prefix, "uid.tid")
	js := []byte(`{"AccessToken":{"a":{}}}`)
	if err := store.Store(ctx, skey, recordfmt.Seal(recordfmt.Header{Gen: 3}, js, skey, derived(kOld)), 0, distributed.NewVersion(), time.Hour); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	env := map[string]string{envRedis: redisURL, envKeys: b64(kNew) + "," + b64(kOld)}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"--prefix", prefix, "--web-app"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, &out, &errOut)
	}
	v, _, err := store.Load(ctx, skey)
	if err != nil {
		t.Fatal(err)
	}
	if h, got, err := recordfmt.Open(v, skey, derived(kNew)); err != nil || h.Gen != 3 || !bytes.Equal(got, js) {
		t.Errorf("after the run: %+v, %q, %v; want the record, sealed with the web app's new token-cache key\n%s", h, got, err, &out)
	}
}

// TestUsage: bad invocations exit 2 with a message that shows no key.
func TestUsage(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no keys", nil, map[string]string{envRedis: "redis://127.0.0.1:1"}, "0 key(s) given"},
		{"one key", nil, map[string]string{envKeys: key, envRedis: "redis://127.0.0.1:1"}, "1 key(s) given"},
		{"bad key", nil, map[string]string{envKeys: key + ",c2VjcmV0", envRedis: "redis://127.0.0.1:1"}, "key 2 is not base64 of 32 bytes"},
		{"no store", nil, map[string]string{envKeys: key + "," + key[:40] + "AAA="}, "no store"},
		{"argument", []string{"extra"}, nil, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut.String(), tc.want)
			}
			if strings.Contains(errOut.String(), "c2VjcmV0") || strings.Contains(errOut.String(), key) {
				t.Errorf("stderr shows a key: %q", errOut.String())
			}
		})
	}
}
