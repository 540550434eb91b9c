package proxy

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// logLimiter writes at most one log line per cause and interval, so that a flood of failing
// upcalls costs the disk one line a second instead of one a packet. Each line carries count:
// the occurrences of its cause since the previous line, itself included. Occurrences after the
// last line of a burst are counted in the next line of their cause (and, always, in the
// control plane's Counters).
type logLimiter struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	causes map[string]*logCause
}

type logCause struct {
	next  time.Time // when the next line may be written
	count int       // occurrences not yet in a line
}

func newLogLimiter(log *slog.Logger, interval time.Duration) *logLimiter {
	return &logLimiter{log: log, interval: interval, now: time.Now, causes: map[string]*logCause{}}
}

// Warn records one occurrence of cause and logs it, with its count, unless a line for cause
// was written less than the interval ago. Causes are a fixed vocabulary (a message without
// addresses or ports); the detail goes into err.
func (l *logLimiter) Warn(cause string, err error) {
	l.mu.Lock()
	c, ok := l.causes[cause]
	if !ok {
		c = &logCause{}
		l.causes[cause] = c
	}
	c.count++
	now := l.now()
	if now.Before(c.next) {
		l.mu.Unlock()
		return
	}
	n := c.count
	c.count, c.next = 0, now.Add(l.interval)
	l.mu.Unlock()
	l.log.Warn(cause, "err", err, "count", n)
}

// causeError is an error with the cause it is logged under.
type causeError struct {
	cause string
	err   error
}

func (e *causeError) Error() string { return e.err.Error() }
func (e *causeError) Unwrap() error { return e.err }

// because files err under cause for the log limiter.
func because(cause string, err error) error { return &causeError{cause: cause, err: err} }

// causeOf returns the cause err was filed under, or def.
func causeOf(err error, def string) string {
	var ce *causeError
	if errors.As(err, &ce) {
		return ce.cause
	}
	return def
}
