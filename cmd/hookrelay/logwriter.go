package main

import (
	"io"
	"sync"
)

// maxLogPending bounds the log lines waiting to be written: past it, a
// logger waits, as it would on a slow file written directly.
const maxLogPending = 256 << 10

// logWriter is serve's log output. A line written while no write is under
// way is written at once, by the logger's own goroutine; lines that come
// while one is under way are gathered and written together by that writer
// when it is done, as the spool commits concurrent events in one
// transaction. So an idle relay's line costs what it did, and under load an
// access log line costs a copy rather than a system call, without a
// goroutine to wake per line.
type logWriter struct {
	w       io.Writer
	mu      sync.Mutex
	idle    *sync.Cond // signalled after each write
	buf     []byte     // lines waiting for the writer
	spare   []byte     // the last buffer written, reused
	writing bool
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w}
	l.idle = sync.NewCond(&l.mu)
	return l
}

// Write queues p, a whole line (slog's handlers write one record a call),
// and writes it with whatever else waits unless a write is under way.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.buf) > maxLogPending {
		l.idle.Wait()
	}
	l.buf = append(l.buf, p...)
	if l.writing {
		return len(p), nil // the writer takes it after its write
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
	return len(p), nil
}

// Close returns once every line written before it is out.
func (l *logWriter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.writing {
		l.idle.Wait()
	}
}
