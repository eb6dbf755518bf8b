package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/msalcache/msalcache/distributed"
)

// redialFloor is how soon after a failed attempt to connect a call may
// start another one: calls made in between fail at once with the last
// error, so that a burst of calls during an outage does not dial for each.
const redialFloor = 100 * time.Millisecond

// sentinelRefresh is how often a Sentinel client asks the sentinels which
// server is the master, besides following their +switch-master events: it
// finds the master again if an event was missed.
const sentinelRefresh = 5 * time.Second

// A dialer makes the rueidis client of a Store: Open's first attempt, and
// later ones while no attempt has succeeded. Its fields are read-only after
// Open.
type dialer struct {
	opt      rueidis.ClientOption
	seeds    []string // tried one at a time; nil for Sentinel (all go to rueidis)
	redacted string   // the URL, for messages
}

// dial makes a client, bounded by the dial timeout per address. It does not
// take a ctx: rueidis.NewClient has none; callers wait for it in a goroutine
// (see Store.conn).
func (d *dialer) dial() (rueidis.Client, error) {
	if d.seeds == nil {
		client, err := rueidis.NewClient(d.opt)
		if err != nil {
			return nil, d.explain(err)
		}
		return client, nil
	}
	// One seed at a time: given several, rueidis dials them all and closes
	// the connections that lost the race after NewClient returns, and each
	// close would reach Notify's listeners as a dropped cache. The cluster's
	// other nodes are found from the first seed that answers.
	opt := d.opt
	var errs []error
	for _, addr := range d.seeds {
		opt.InitAddress = []string{addr}
		client, err := rueidis.NewClient(opt)
		if err == nil {
			return client, nil
		}
		if errors.Is(err, rueidis.ErrNoCache) {
			return nil, fmt.Errorf("redisstore: %s does not support RESP3 client-side caching: Redis 6 or later is needed: %w", addr, errRefused)
		}
		if len(d.seeds) > 1 {
			err = fmt.Errorf("%s: %w", addr, err)
		}
		errs = append(errs, err)
	}
	return nil, d.explain(errors.Join(errs...))
}

// errRefused marks an error of dial that waiting will not fix: the server
// answered and refused this client (a wrong password, a server too old).
var errRefused = errors.New("refused by the server")

// explain wraps a failed connection's error, marked errRefused when the
// server itself refused it.
func (d *dialer) explain(err error) error {
	if errors.Is(err, rueidis.ErrNoCache) {
		return fmt.Errorf("redisstore: %s does not support RESP3 client-side caching: Redis 6 or later is needed: %w", d.redacted, errRefused)
	}
	if refused(err) {
		return fmt.Errorf("redisstore: connecting to %s: %w: %w", d.redacted, errRefused, err)
	}
	return fmt.Errorf("redisstore: connecting to %s: %w", d.redacted, err)
}

// refused reports whether err is a server's error reply that is not
// transient: a server still loading its data, or a replica whose master is
// down, will answer later; a wrong password will not.
func refused(err error) bool {
	var rerr *rueidis.RedisError
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, transient := range []string{"LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN"} {
		if strings.HasPrefix(msg, transient) {
			return false
		}
	}
	return true
}

// conn returns the client, connecting first if no attempt has succeeded
// yet. One attempt runs at a time, in its own goroutine; callers wait for
// it within their ctx, and one that gives up leaves it running for the
// next. An attempt that failed less than redialFloor ago is not repeated.
func (s *Store) conn(ctx context.Context) (rueidis.Client, error) {
	if c := s.client.Load(); c != nil {
		return *c, nil
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, distributed.ErrClosed
	}
	if c := s.client.Load(); c != nil {
		s.mu.Unlock()
		return *c, nil
	}
	done := s.dialing
	if done == nil {
		if time.Since(s.failedAt) < redialFloor {
			err := s.dialErr
			s.mu.Unlock()
			return nil, unavailable(err)
		}
		done = make(chan struct{})
		s.dialing = done
		go s.redial(done)
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, unavailable(ctx.Err())
	}
	if c := s.client.Load(); c != nil {
		return *c, nil
	}
	if s.closed.Load() {
		return nil, distributed.ErrClosed
	}
	s.mu.Lock()
	err := s.dialErr
	s.mu.Unlock()
	return nil, unavailable(err)
}

// unavailable is the error of a call made while the Store is not
// connected.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", distributed.ErrUnavailable, err)
}

// redial is one attempt to connect after Open's failed; it closes done when
// it ends.
func (s *Store) redial(done chan struct{}) {
	defer close(done)
	client, err := s.dialer.dial()
	s.mu.Lock()
	s.dialing = nil
	closed := s.closed.Load()
	if err == nil && !closed {
		s.client.Store(&client)
	}
	if err != nil {
		s.dialErr, s.failedAt = err, time.Now()
	}
	s.mu.Unlock()
	switch {
	case err == nil && closed:
		client.Close()
	case err == nil:
		s.log.Info("redisstore: connected", "url", s.dialer.redacted)
	default:
		s.log.Debug("redisstore: still not connected", "err", err)
	}
}
