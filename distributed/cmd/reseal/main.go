// Command reseal finishes a key rotation of the distributed cache: it seals
// again with the new key every partition still sealed with an old one, and
// prints how many partitions it found in each state (distributed.Reseal).
//
// Usage:
//
//	RESEAL_KEYS=NEW,OLD RESEAL_REDIS=redis://... go run ./distributed/cmd/reseal [flags]
//
// The keys are base64 of 32 bytes, the new one first, as given to
// WithEncryptionKeys (the web app's --key); they come from RESEAL_KEYS or
// from a file (--keys-file, one key per line or comma-separated), never
// from the command line, and are never printed. The store is Redis
// (RESEAL_REDIS or --redis), PostgreSQL (RESEAL_POSTGRES or --postgres), or
// both: the tandem, scanned on PostgreSQL. URLs are never printed either.
//
// For examples/web-app, give its --key list (new first) and --web-app: it
// seals its token cache with keys derived from those.
//
// The safe sequence: deploy [old, new] on every replica, then [new, old]
// on every replica; run reseal until it says it is done; run it with
// --dry-run: "old-key 0" means dropping the old key signs nobody out; then
// deploy [new]. --limit stops a run after about that many partitions and
// prints the --cursor that continues it.
//
// Exit status: 0 when the run ended (done, or stopped at --limit), 1 on an
// error (the counts so far and the cursor to resume are printed), 2 for a
// usage error.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/pgstore"
	"github.com/msalcache/msalcache/distributed/redisstore"
	"github.com/msalcache/msalcache/internal/appkey"
)

// Environment variables read for the secrets (and the URLs, which may hold
// passwords).
const (
	envKeys     = "RESEAL_KEYS"
	envRedis    = "RESEAL_REDIS"
	envPostgres = "RESEAL_POSTGRES"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// options are the parsed flags.
type options struct {
	redisURL, postgresURL, table string
	keysFile, prefix, cursor     string
	ttl, timeout                 time.Duration
	limit, batch                 int
	dryRun, webApp               bool
}

// usageError is a wrong invocation: exit status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// run is the command; it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("reseal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.redisURL, "redis", getenv(envRedis), "Redis URL, as redisstore.Open reads it (default $"+envRedis+")")
	fs.StringVar(&o.postgresURL, "postgres", getenv(envPostgres), "PostgreSQL URL, as pgstore.Open reads it (default $"+envPostgres+"); with --redis: the tandem, scanned on PostgreSQL")
	fs.StringVar(&o.table, "table", "", "PostgreSQL table (default pgstore's)")
	fs.StringVar(&o.keysFile, "keys-file", "", "file holding the keys, the new one first (default $"+envKeys+")")
	fs.StringVar(&o.prefix, "prefix", distributed.DefaultKeyPrefix, "the Caches' WithKeyPrefix")
	fs.DurationVar(&o.ttl, "ttl", distributed.DefaultTTL, "the Caches' WithTTL: the expiry a rewritten partition gets")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "bound of each store call")
	fs.IntVar(&o.limit, "limit", 0, "stop after about this many partitions (0: all)")
	fs.IntVar(&o.batch, "batch", 100, "keys listed per scan")
	fs.StringVar(&o.cursor, "cursor", "", "continue the run that printed this cursor")
	fs.BoolVar(&o.dryRun, "dry-run", false, "count only, write nothing")
	fs.BoolVar(&o.webApp, "web-app", false, "the keys are examples/web-app's --key list: reseal its token cache, whose keys it derives from them")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "reseal: unexpected arguments %q (everything is a flag)\n", fs.Args())
		return 2
	}
	keys, err := readKeys(o.keysFile, getenv(envKeys))
	if err != nil {
		fmt.Fprintf(stderr, "reseal: %v\n", err)
		return 2
	}
	if o.webApp {
		// The web app seals its token cache with a key derived from each
		// of its keys (one key a purpose).
		keys = appkey.Derive(keys, appkey.Tokens)
	}
	if o.limit < 0 || o.batch <= 0 {
		fmt.Fprintln(stderr, "reseal: --limit must be 0 or more and --batch positive")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := open(o, log)
	if err != nil {
		fmt.Fprintf(stderr, "reseal: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			return 2
		}
		return 1
	}
	defer store.Close()

	res, err := distributed.Reseal(ctx, store,
		distributed.ResealRun{Cursor: o.cursor, Limit: o.limit, Batch: o.batch, DryRun: o.dryRun},
		distributed.WithEncryptionKeys(keys...), distributed.WithKeyPrefix(o.prefix),
		distributed.WithTTL(o.ttl), distributed.WithTimeout(o.timeout), distributed.WithLogger(log))
	report(stdout, res, o.dryRun, err != nil)
	if err != nil {
		fmt.Fprintf(stderr, "reseal: %v\n", err)
		return 1
	}
	return 0
}

// open opens the store the flags name.
func open(o options, log *slog.Logger) (distributed.Store, error) {
	var pgOpts []pgstore.Option
	pgOpts = append(pgOpts, pgstore.WithExistingSchema(), pgstore.WithLogger(log))
	if o.table != "" {
		pgOpts = append(pgOpts, pgstore.WithTable(o.table))
	}
	switch {
	case o.redisURL != "" && o.postgresURL != "":
		r, err := redisstore.Open(o.redisURL, redisstore.WithLogger(log))
		if err != nil {
			return nil, err
		}
		p, err := pgstore.Open(o.postgresURL, pgOpts...)
		if err != nil {
			r.Close()
			return nil, err
		}
		return distributed.Tiered(r, p), nil
	case o.redisURL != "":
		return redisstore.Open(o.redisURL, redisstore.WithLogger(log))
	case o.postgresURL != "":
		return pgstore.Open(o.postgresURL, pgOpts...)
	}
	return nil, usageError("no store: set --redis or $" + envRedis + ", --postgres or $" + envPostgres + ", or both")
}

// readKeys reads the keys from file, or else from env: base64 of 32 bytes
// each, separated by commas or line breaks, the new one first. Errors never
// show a key.
func readKeys(file, env string) ([][]byte, error) {
	text := env
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		text = string(b)
	}
	var keys [][]byte
	for i, part := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var k []byte
		var err error
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if k, err = enc.DecodeString(part); err == nil {
				break
			}
		}
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("key %d is not base64 of 32 bytes (openssl rand -base64 32)", i+1)
		}
		keys = append(keys, k)
	}
	if len(keys) < 2 {
		return nil, fmt.Errorf("%d key(s) given: give the new key and the old one(s), new first, in $%s or --keys-file", len(keys), envKeys)
	}
	return keys, nil
}

// report prints the counts and how to continue.
func report(w io.Writer, r distributed.ResealResult, dryRun, failed bool) {
	resealed := "resealed"
	if dryRun {
		resealed = "resealed (dry run)"
	}
	fmt.Fprintf(w, "visited     %d\n", r.Visited)
	fmt.Fprintf(w, "%-11s %d\n", resealed, r.Resealed)
	fmt.Fprintf(w, "current     %d   already sealed with the new key\n", r.Current)
	fmt.Fprintf(w, "old-key     %d   still sealed with an old key: signed out if the old keys are dropped now\n", r.OldKey)
	fmt.Fprintf(w, "no-key      %d   open with none of the keys: left as they are\n", r.NoKey)
	fmt.Fprintf(w, "gone        %d   removed or expired during the run\n", r.Gone)
	fmt.Fprintf(w, "tombstones  %d   sign-outs among the partitions that open\n", r.Tombstone)
	fmt.Fprintf(w, "conflicts   %d   rewrites another writer beat, loaded again\n", r.Conflicts)
	switch {
	case failed && r.Cursor == "":
		fmt.Fprintln(w, "not done: run it again")
		return
	case r.Cursor == "":
		fmt.Fprintln(w, "done: the whole store was visited")
		return
	}
	fmt.Fprintf(w, "not done: continue with --cursor '%s'\n", r.Cursor)
}
