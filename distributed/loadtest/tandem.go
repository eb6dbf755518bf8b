package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/jackc/pgx/v5"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/pgstore"
	"github.com/msalcache/msalcache/distributed/redisstore"
)

// openStore opens the store of a process: Redis, or with pgURL the tandem
// of Redis and PostgreSQL.
func openStore(redisURL, pgURL string) (distributed.Store, error) {
	r, err := redisstore.Open(redisURL)
	if err != nil || pgURL == "" {
		return r, err
	}
	pg, err := pgstore.Open(pgURL)
	if err != nil {
		r.Close()
		return nil, err
	}
	return distributed.Tiered(r, pg), nil
}

// tandemFaults runs the three faults of --tandem in turn, from start:
// Redis flushed, Redis killed and restarted empty, PostgreSQL killed and
// restarted. Users sign in while PostgreSQL is down (the signer's Cache
// keeps their tokens and writes them back when it returns); the workers are
// then given them. It returns the users and the token requests of their
// sign-ins.
func tandemFaults(ctx context.Context, o options, e *env, ws *workers, sg *signer, r *report, start time.Time) ([]confidential.Account, int, error) {
	at := func(d time.Duration) bool { return sleep(ctx, d-time.Since(start)) }
	since := func(t time.Time) float64 { return t.Sub(start).Seconds() }

	if !at(o.duration * 15 / 100) {
		return nil, 0, ctx.Err()
	}
	client, err := openRaw(e.redisURL)
	if err != nil {
		return nil, 0, err
	}
	err = client.Do(ctx, client.B().Flushall().Build()).Error()
	client.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("FLUSHALL: %w", err)
	}
	flushed := time.Now()

	if !at(o.duration * 30 / 100) {
		return nil, 0, ctx.Err()
	}
	ws.send(lineDown)
	if err := e.redis.Kill(); err != nil {
		return nil, 0, err
	}
	redisDown := time.Now()
	if !sleep(ctx, o.outage) {
		return nil, 0, ctx.Err()
	}
	if err := e.redis.Restart(ctx); err != nil {
		return nil, 0, err
	}
	redisBack := time.Now()
	ws.send(lineUp)

	if !at(o.duration*40/100 + o.outage) {
		return nil, 0, ctx.Err()
	}
	ws.send(lineDown)
	if err := e.pg.Kill(); err != nil {
		return nil, 0, err
	}
	pgDown := time.Now()
	late, err := sg.signIn(ctx, o.users, o.users+lateUsers(o))
	if err != nil {
		return nil, 0, err
	}
	expected := 0
	for i := range late {
		expected += e.idp.UserRequests(e.idp.Tenant(), username(o.users+i)).Token
	}
	if !sleep(ctx, o.outage-time.Since(pgDown)) {
		return nil, 0, ctx.Err()
	}
	if err := e.pg.Restart(ctx); err != nil {
		return nil, 0, err
	}
	pgBack := time.Now()
	ws.send(lineUp)
	wb, err := sg.writtenBack(ctx, pgBack)
	if err != nil {
		return nil, 0, err
	}
	b, err := json.Marshal(late)
	if err != nil {
		return nil, 0, err
	}
	ws.send(lineUsers + string(b))
	r.events = append(r.events, event{"Redis flushed", flushed.Sub(start), flushed.Sub(start)},
		event{"Redis down", redisDown.Sub(start), redisBack.Sub(start)},
		event{"PostgreSQL down", pgDown.Sub(start), pgBack.Sub(start)})
	r.outage = fmt.Sprintf("Redis flushed (FLUSHALL) at %.1f s; redis-server killed (SIGKILL) at %.1f s, back empty at %.1f s; PostgreSQL killed (SIGKILL) at %.1f s, back at %.1f s",
		since(flushed), since(redisDown), since(redisBack), since(pgDown), since(pgBack))
	r.late = fmt.Sprintf("%d users signed in while PostgreSQL was down; their tokens were written back %v after it returned, and the workers were given these users then",
		len(late), round(wb))
	return late, expected, nil
}

// signedOut counts the accounts that a newly started replica (a new store
// client, Cache and MSAL client) cannot serve silently.
func signedOut(ctx context.Context, e *env, accounts []confidential.Account) (int, error) {
	store, err := openStore(e.redisURL, e.pgURL)
	if err != nil {
		return 0, err
	}
	defer store.Close()
	c, err := distributed.New(store, distributed.WithEncryptionKeys(e.key), distributed.WithKeyPrefix(e.prefix))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	web, err := newClient(e.idp.Authority(), webClientID, webSecret, e.idp.HTTPClient(), c)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range accounts {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := web.AcquireTokenSilent(cctx, userScope, confidential.WithSilentAccount(a))
		cancel()
		if err != nil || res.Account.HomeAccountID != a.HomeAccountID {
			n++
		}
	}
	return n, nil
}

// inspectPostgres is inspect for the tandem's truth: the rows of the
// run's prefix in PostgreSQL (pgstore's default table), alive.
func inspectPostgres(ctx context.Context, pgURL, prefix string, key []byte, partitions map[string]bool) (inspection, error) {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return inspection{}, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT key, value FROM `+pgstore.DefaultTable+
		` WHERE starts_with(key, $1) AND (expires_at IS NULL OR expires_at > now())`, prefix)
	if err != nil {
		return inspection{}, err
	}
	records := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return inspection{}, err
		}
		records[k] = v
	}
	if err := rows.Err(); err != nil {
		return inspection{}, err
	}
	return check(records, prefix, key, partitions)
}
