package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

const (
	// logFlushInterval is how long a line at info or below may wait to be
	// written with the lines after it, as an access log's buffer does
	// (nginx's `flush=`). A line at warn or above goes out at once.
	logFlushInterval = 100 * time.Millisecond
	// logFlushSize: this many bytes waiting are written without waiting
	// for the interval.
	logFlushSize = 64 << 10
	// maxLogPending bounds the log lines waiting to be written: past it, a
	// logger waits, as it would on a slow file written directly.
	maxLogPending = 256 << 10
)

// logWriter is serve's log output. A relay under load writes two lines an
// event (ingest, delivery), and a write(2) each was a tenth of the CPU a
// delivered event costs; so lines wait in a buffer and go out together
// when logFlushInterval has passed since the first of them, when
// logFlushSize bytes wait, when a line at warn or above comes (through
// flushOnWarn), and on Close. A crash loses at most the interval's info
// lines; a panic's own report goes to standard error directly.
type logWriter struct {
	w       io.Writer
	mu      sync.Mutex
	idle    *sync.Cond // signalled after each write
	buf     []byte     // lines waiting
	spare   []byte     // the last buffer written, reused
	writing bool
	timer   *time.Timer // armed while lines wait
	closed  bool
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w}
	l.idle = sync.NewCond(&l.mu)
	return l
}

// Write queues p, a whole line (slog's handlers write one record a call).
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.buf) > maxLogPending {
		l.idle.Wait()
	}
	l.buf = append(l.buf, p...)
	switch {
	case len(l.buf) >= logFlushSize || l.closed:
		l.flushLocked()
	case l.timer == nil:
		l.timer = time.AfterFunc(logFlushInterval, l.Flush)
	}
	return len(p), nil
}

// Flush writes every line waiting, unless a write is under way: that
// writer takes them after its write.
func (l *logWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *logWriter) flushLocked() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if l.writing {
		return
	}
	l.writing = true
	for len(l.buf) > 0 {
		b := l.buf
		l.buf, l.spare = l.spare[:0], nil
		l.mu.Unlock()
		_, _ = l.w.Write(b) // a log that cannot be written has nowhere to say so
		l.mu.Lock()
		if cap(b) <= 2*maxLogPending {
			l.spare = b[:0]
		}
		l.idle.Broadcast()
	}
	l.writing = false
}

// Close returns once every line written before it is out; later lines are
// written at once.
func (l *logWriter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.flushLocked()
	for l.writing {
		l.idle.Wait()
	}
}

// flushOnWarn writes a record at warn or above, and every line before it,
// when its Handle returns: what an operator must see is not left waiting.
type flushOnWarn struct {
	slog.Handler
	w *logWriter
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.w.Flush()
	}
	return err
}

func (h flushOnWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushOnWarn{h.Handler.WithAttrs(attrs), h.w}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{h.Handler.WithGroup(name), h.w}
}
