package lock

import (
	"context"
	"sync"
)

// inProcess excludes the goroutines of this process that lock the same path.
// The OS lock would exclude them too (every Lock call opens its own handle),
// but the race detector cannot see file locks, and waiting on a channel is
// cheaper than polling the file system. It is package state because the
// exclusion is per path and per process, whatever *Lock values are used.
var inProcess = &mutexes{m: make(map[string]*pathMutex)}

type mutexes struct {
	mu sync.Mutex
	m  map[string]*pathMutex
}

// pathMutex is a semaphore of one slot: a send takes it, a receive frees it.
// refs counts the goroutines holding or waiting, so unused entries go away.
type pathMutex struct {
	slot chan struct{}
	refs int
}

// lock takes the mutex of key, or returns ctx().Err() if it has to wait
// and ctx() is done first. ctx is called only to wait. Call unlock once.
func (ms *mutexes) lock(ctx func() context.Context, key string) (unlock func(), err error) {
	ms.mu.Lock()
	m := ms.m[key]
	if m == nil {
		m = &pathMutex{slot: make(chan struct{}, 1)}
		ms.m[key] = m
	}
	m.refs++
	ms.mu.Unlock()

	select {
	case m.slot <- struct{}{}:
	default:
		ctx := ctx()
		select {
		case m.slot <- struct{}{}:
		case <-ctx.Done():
			ms.done(key, m)
			return nil, ctx.Err()
		}
	}
	return func() {
		<-m.slot
		ms.done(key, m)
	}, nil
}

func (ms *mutexes) done(key string, m *pathMutex) {
	ms.mu.Lock()
	m.refs--
	if m.refs == 0 {
		delete(ms.m, key)
	}
	ms.mu.Unlock()
}
