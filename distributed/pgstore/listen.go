package pgstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds of the notice connection's reconnection: the first wait after a
// loss, and the longest.
const (
	reconnectFirst = 100 * time.Millisecond
	reconnectMax   = 5 * time.Second
)

// listen opens the notice connection, outside the pool, and subscribes it
// to the table's channel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.dialTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, s.q.listen); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listenLoop passes the notices that reach conn to the listeners until ctx
// ends. When the connection is lost, it tells the listeners "" (they may
// miss changes from now on), connects again, backing off, and tells them
// "" again once it listens: what changed in between was not heard.
func (s *Store) listenLoop(ctx context.Context, conn *pgx.Conn) {
	for {
		err := s.relay(ctx, conn)
		s.echoes.setUp(false)
		closeQuietly(conn)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("pgstore: the notice connection was lost; connecting again", "err", err)
		s.broadcast("")
		if conn = s.reconnect(ctx); conn == nil {
			return
		}
		s.log.Info("pgstore: the notice connection is back")
		s.broadcast("")
		s.echoes.setUp(true)
	}
}

// relay passes notices to the listeners until the connection fails or ctx
// ends. A connection idle for the health timeout is checked with an empty
// statement, which must answer within the health timeout.
func (s *Store) relay(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.health)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.relayOne(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed():
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.health)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// relayOne passes on the notice with payload p: a token, then the key (see
// notice in sql.go). A payload of another form, or without a key, means
// anything may have changed.
func (s *Store) relayOne(p string) {
	if len(p) < tokenLen {
		s.broadcast("")
		return
	}
	token, key := p[:tokenLen], p[tokenLen:]
	if token != cleanupToken {
		s.broadcast(key)
		s.echoes.heard(token)
		return
	}
	if key == "" {
		s.broadcast("")
		return
	}
	for k := range strings.SplitSeq(key, "\n") {
		s.broadcast(k)
	}
}

// reconnect opens a new notice connection, waiting longer after each
// failure, until it succeeds (it returns the connection) or ctx ends (nil).
func (s *Store) reconnect(ctx context.Context) *pgx.Conn {
	wait := reconnectFirst
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		conn, err := s.listen(ctx)
		if err == nil {
			return conn
		}
		wait = min(2*wait, reconnectMax)
	}
}

func closeQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
