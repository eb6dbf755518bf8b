package lock

import "time"

// DefaultTimeout bounds the wait of a Lock call whose context has no deadline,
// unless WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// An Option configures a Lock. The set is closed: the options are the
// functions of this package that return an Option.
type Option interface{ apply(*config) }

type config struct {
	timeout time.Duration
}

type timeoutOption time.Duration

func (o timeoutOption) apply(c *config) { c.timeout = time.Duration(o) }

// WithTimeout sets how long Lock waits when its context has no deadline
// (default DefaultTimeout). A context deadline always wins. A d of zero or
// less selects the default.
func WithTimeout(d time.Duration) Option { return timeoutOption(d) }
