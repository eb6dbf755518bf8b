package distributed

// maxTrusted bounds the keys a tandem remembers as checked: past it, one is
// forgotten (and checked again at its next Load) for each new one.
const maxTrusted = 1 << 15

// A trust is what a tandem knows of its first layer's copy of one key: a
// check against the second layer began (token), and ended with both
// layers agreeing (checked).
type trust struct {
	token   uint64
	checked bool
}

// The trust rule. A copy in the first layer is served only if this tandem
// checked it against the second layer since the second layer last told of a
// change of that key, and since either layer last said that anything may
// have changed (""). Every other Load reads the second layer once (and
// repairs the copy if it differs): the first Load of each key in a process,
// the next Load of a key changed anywhere, and every key once after a
// reconnection, a flush or a restart of Redis. So a copy a writer left stale
// (it ended between its two writes), or a Redis restored from files older
// than the second layer, is never served: a stale copy is one the second
// layer replaced, which a running tandem hears of, and one a new tandem
// checks before it trusts it.
//
// Without notices from both layers nothing tells a tandem that a checked
// copy went stale: it then checks every Load.

// checkOf returns whether key's copy may be served unchecked, and otherwise
// the token of a check that begins now (0 when checks are not remembered).
func (t *tiered) checkOf(key string) (trusted bool, token uint64) {
	if !t.notified {
		return false, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.trusted[key]; ok && e.checked {
		return true, 0
	}
	if len(t.trusted) >= maxTrusted {
		for k := range t.trusted {
			delete(t.trusted, k)
			break
		}
	}
	t.tokens++
	t.trusted[key] = trust{token: t.tokens}
	return false, t.tokens
}

// checked records that the check token of key found both layers agreeing;
// a notice of key that came since (it deleted the entry) wins.
func (t *tiered) checked(key string, token uint64) {
	if token == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.trusted[key]; ok && e.token == token {
		t.trusted[key] = trust{token: token, checked: true}
	}
}

// distrust forgets the checks of key ("": of every key). It is called by the
// layers' notices, on their goroutines: it only takes mu.
func (t *tiered) distrust(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if key == "" {
		clear(t.trusted)
		return
	}
	delete(t.trusted, key)
}

// noticeSecond is the tandem's own listener of the second layer: any
// change of a key there makes the copy in the first to be checked.
func (t *tiered) noticeSecond(key string) { t.distrust(key) }

// noticeFirst is its listener of the first layer: a first layer that lost
// its connection, was flushed or restarted (maybe from older files) may hold
// anything.
func (t *tiered) noticeFirst(key string) {
	if key == "" {
		t.distrust("")
	}
}
