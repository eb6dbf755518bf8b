package distributed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by a Store or a Cache used after Close. It wraps
// net.ErrClosed, so errors.Is(err, net.ErrClosed) also holds: the
// convention of every Store of this module and of the Cache.
var ErrClosed = fmt.Errorf("distributed: closed (%w)", net.ErrClosed)

// NewMemoryStore returns a Store that keeps its values in this process: the
// embedded default, for an app that runs as one process. It has the
// semantics of the Redis store (versioned compare-and-set, expiry,
// invalidation notices), so several Caches on one memory store behave as
// replicas of an app on one Redis do. It implements Notifier.
func NewMemoryStore() Store {
	return &memoryStore{items: map[string]*memoryItem{}}
}

type memoryStore struct {
	mu        sync.Mutex
	items     map[string]*memoryItem
	listeners []func(key string)
	closed    bool
}

type memoryItem struct {
	value   []byte
	version Version
	expiry  *time.Timer // nil: never expires
}

func (s *memoryStore) Load(ctx context.Context, key string) ([]byte, Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return nil, 0, nil
	}
	return append([]byte(nil), it.value...), it.version, nil
}

func (s *memoryStore) Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if next == 0 || next == prev {
		return errors.New("distributed: a write needs a new non-zero version")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	it, ok := s.items[key]
	var have Version
	if ok {
		have = it.version
	}
	if have != prev {
		s.mu.Unlock()
		return ErrConflict
	}
	if ok && it.expiry != nil {
		it.expiry.Stop()
	}
	it = &memoryItem{value: append([]byte(nil), value...), version: next}
	s.items[key] = it
	s.expireLocked(key, it, ttl)
	listeners := s.listeners
	s.mu.Unlock()
	notify(listeners, key)
	return nil
}

// expireLocked arranges for it to be removed after ttl, unless it has been
// replaced or touched by then.
func (s *memoryStore) expireLocked(key string, it *memoryItem, ttl time.Duration) {
	if ttl <= 0 {
		it.expiry = nil
		return
	}
	it.expiry = time.AfterFunc(ttl, func() {
		s.mu.Lock()
		if s.items[key] != it || s.closed {
			s.mu.Unlock()
			return
		}
		delete(s.items, key)
		listeners := s.listeners
		s.mu.Unlock()
		notify(listeners, key)
	})
}

func (s *memoryStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return nil
	}
	if it.expiry != nil && !it.expiry.Stop() {
		return nil // expiring right now
	}
	s.expireLocked(key, it, ttl)
	return nil
}

// Notify registers f. Each Cache on the store registers its own; every one is
// told of every change, its own writes included.
func (s *memoryStore) Notify(f func(key string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners[:len(s.listeners):len(s.listeners)], f)
}

// Close drops every value. A second Close returns nil and does nothing;
// other calls after Close return ErrClosed.
func (s *memoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, it := range s.items {
		if it.expiry != nil {
			it.expiry.Stop()
		}
	}
	s.items = nil
	return nil
}

func notify(listeners []func(string), key string) {
	for _, f := range listeners {
		f(key)
	}
}

// Scan implements Scanner: keys in byte order, the cursor is the last key
// returned.
func (s *memoryStore) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if n <= 0 {
		return nil, "", fmt.Errorf("distributed: Scan: batch size %d: must be positive", n)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, "", ErrClosed
	}
	var keys []string
	for k := range s.items {
		if strings.HasPrefix(k, prefix) && k > cursor {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	slices.Sort(keys)
	if len(keys) <= n {
		return keys, "", nil
	}
	keys = keys[:n]
	return keys, keys[n-1], nil
}
