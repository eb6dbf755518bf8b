package fakeidp

import (
	"net/http"
	"sync"
)

// A refreshHold holds the answers to refresh token requests (see
// [Server.HoldRefreshes]).
type refreshHold struct {
	held     chan string
	released chan struct{}
	once     sync.Once
}

func (h *refreshHold) release() {
	if h != nil {
		h.once.Do(func() { close(h.released) })
	}
}

// HoldRefreshes makes the token endpoint hold its answers to refresh token
// requests (a silent call that needs a new access token), as a slow
// identity provider or network would: the tokens are issued, then the
// answer waits until release is called, the request is abandoned or the
// Server is closed. held receives the username of each answer held, when it
// starts to wait (up to 64 are buffered; more are held without notice).
// Answers of requests that arrive after release go at once. Another call
// replaces the hold (the answers it holds wait for its own release).
// Other grants are never held.
func (s *Server) HoldRefreshes() (held <-chan string, release func()) {
	h := &refreshHold{held: make(chan string, 64), released: make(chan struct{})}
	s.mu.Lock()
	s.hold = h
	s.mu.Unlock()
	return h.held, func() {
		s.mu.Lock()
		if s.hold == h {
			s.hold = nil
		}
		s.mu.Unlock()
		h.release()
	}
}

// holdRefresh waits, if a hold is set, until it is released or the request
// is abandoned.
func (s *Server) holdRefresh(r *http.Request, username string) {
	s.mu.Lock()
	h := s.hold
	s.mu.Unlock()
	if h == nil {
		return
	}
	select {
	case h.held <- username:
	default:
	}
	select {
	case <-h.released:
	case <-r.Context().Done():
	}
}
