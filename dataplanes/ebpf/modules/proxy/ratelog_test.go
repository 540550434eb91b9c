package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLogLimiter: one line per cause and interval, with the count of occurrences it stands
// for; causes are limited separately.
func TestLogLimiter(t *testing.T) {
	var buf bytes.Buffer
	l := newLogLimiter(slog.New(slog.NewTextHandler(&buf, nil)), time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	spoofed := because("upcall with a spoofed source", errors.New("from 10.0.0.1"))
	for range 1000 {
		l.Warn(causeOf(spoofed, "upcall failed"), spoofed)
	}
	l.Warn(causeOf(errors.New("other"), "upcall failed"), errors.New("other"))
	now = now.Add(time.Second)
	for range 10 {
		l.Warn("upcall with a spoofed source", spoofed)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3, buf.String())
	assert.Contains(t, lines[0], `msg="upcall with a spoofed source"`)
	assert.Contains(t, lines[0], "count=1")
	assert.Contains(t, lines[1], `msg="upcall failed"`)
	assert.Contains(t, lines[2], "count=1000", "the next line counts what the last second suppressed")
}
