package main

import (
	"io"
	"sync"
)

// maxLogPending bounds the log lines waiting for the writer: past it, a
// logger waits, as it would on a slow file written directly.
const maxLogPending = 256 << 10

// logWriter is serve's log output: every line is handed to one goroutine
// that writes whatever has gathered since its last write in one write, as
// the spool commits concurrent events in one transaction. An idle relay's
// line is written at once; under load an access log line costs a copy, not
// a system call. Close writes what is left.
type logWriter struct {
	w    io.Writer
	mu   sync.Mutex
	room *sync.Cond // signalled when the writer has taken the pending lines
	buf  []byte     // lines not yet taken by the writer
	// spare is the writer's last buffer, reused once written.
	spare  []byte
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.room = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// Write queues p, a whole line (slog's handlers write one record a call).
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.w.Write(p)
	}
	for len(l.buf) > maxLogPending && !l.closed {
		l.room.Wait()
	}
	l.buf = append(l.buf, p...)
	select {
	case l.wake <- struct{}{}:
	default: // the writer is awake already and will see the line
	}
	return len(p), nil
}

func (l *logWriter) run() {
	defer close(l.done)
	for range l.wake {
		l.mu.Lock()
		b := l.buf
		l.buf, l.spare = l.spare[:0], nil
		l.room.Broadcast()
		l.mu.Unlock()
		if len(b) > 0 {
			_, _ = l.w.Write(b) // a log that cannot be written has nowhere to say so
		}
		l.mu.Lock()
		if cap(b) <= maxLogPending*2 {
			l.spare = b[:0]
		}
		l.mu.Unlock()
	}
}

// Close writes the lines still queued; later writes go straight to w.
func (l *logWriter) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.wake)
	l.room.Broadcast()
	l.mu.Unlock()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		_, _ = l.w.Write(l.buf)
		l.buf = nil
	}
}
