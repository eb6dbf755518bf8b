package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// echoWait bounds how long a Store call waits for the notice of its own
// write to come back to the listener.
const echoWait = time.Second

// echoes lets a write wait until the listening goroutine has relayed its
// own change notice: when Store returns, every Cache sharing the Store has
// been told of the change (as redisstore's barrier does), so none serves
// the old value from memory afterwards, and the writer's own notice does
// not arrive later to drop what it just cached.
//
// Each write names itself by a token at the start of its notice's payload.
// Store calls expect before the write, then wait or forget; the listening
// goroutine calls heard for each notice and lost when its connection is
// lost. All methods may be called from any goroutine.
type echoes struct {
	mu      sync.Mutex
	waiting map[string]chan struct{} // by token

	up      atomic.Bool // the notice connection listens
	lagging atomic.Bool // a wait timed out and no notice came since: do not wait
}

// expect returns a new token and the channel closed when its notice is
// heard.
func (e *echoes) expect() (string, chan struct{}) {
	ch := make(chan struct{})
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.waiting == nil {
		e.waiting = map[string]chan struct{}{}
	}
	for {
		token := fmt.Sprintf("%016x", rand.Uint64())
		if _, taken := e.waiting[token]; !taken && token != cleanupToken {
			e.waiting[token] = ch
			return token, ch
		}
	}
}

// forget drops the token of a write that sent no notice, or whose notice
// is no longer awaited.
func (e *echoes) forget(token string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.waiting, token)
}

// wait waits, bounded by ctx and echoWait, until the notice of token is
// heard. It does not wait while the notice connection is down or lagging.
func (e *echoes) wait(ctx context.Context, token string, heard chan struct{}) {
	defer e.forget(token)
	if !e.up.Load() || e.lagging.Load() {
		return
	}
	t := time.NewTimer(echoWait)
	defer t.Stop()
	select {
	case <-heard:
	case <-ctx.Done():
	case <-t.C:
		e.lagging.Store(true)
	}
}

// heard marks the notice of token heard.
func (e *echoes) heard(token string) {
	e.lagging.Store(false)
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch, ok := e.waiting[token]; ok {
		close(ch)
		delete(e.waiting, token)
	}
}

// setUp records whether the notice connection listens; when it does not,
// every write waiting for its notice stops waiting.
func (e *echoes) setUp(up bool) {
	e.up.Store(up)
	if up {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for token, ch := range e.waiting {
		close(ch)
		delete(e.waiting, token)
	}
}
