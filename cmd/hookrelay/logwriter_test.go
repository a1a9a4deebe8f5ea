package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hookrelay/hookrelay/engine"
)

// TestLogWriterKeepsEveryLine: lines from concurrent loggers all arrive,
// whole and each logger's in its order, by Close.
func TestLogWriterKeepsEveryLine(t *testing.T) {
	var out lockedBuffer
	w := newLogWriter(&out)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				line := fmt.Sprintf("w%d line %05d %s\n", g, i, strings.Repeat("x", i%300))
				if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
					t.Errorf("Write = %d, %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	w.Close()
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	next := make([]int, writers)
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "w%d line %d", &g, &i); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i != next[g] || len(l) != len(fmt.Sprintf("w%d line %05d ", g, i))+i%300 {
			t.Fatalf("writer %d: line %q out of order or cut (want number %d)", g, l, next[g])
		}
		next[g]++
	}
	if _, err := w.Write([]byte("after close\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "after close\n") {
		t.Fatal("a line written after Close is not out when Write returns")
	}
}

// TestLogWriterFlushes: an info line waits, and is out within the
// interval with nothing written after it; a warn line goes out at once
// with the lines before it; logFlushSize bytes go out without waiting.
func TestLogWriterFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out lockedBuffer
		w := newLogWriter(&out)
		defer w.Close()
		cfg := &engine.Config{}
		cfg.Log.Level, cfg.Log.Format = "info", "json"
		log := newLogger(cfg, w).With("component", "test")

		log.Info("first")
		synctest.Wait()
		if out.String() != "" {
			t.Fatalf("an info line was written at once: %q", out.String())
		}
		time.Sleep(logFlushInterval - time.Millisecond)
		synctest.Wait()
		if out.String() != "" {
			t.Fatalf("an info line was written before the interval: %q", out.String())
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !strings.Contains(out.String(), `"msg":"first"`) {
			t.Fatalf("the info line is not out after the interval: %q", out.String())
		}

		log.Info("second")
		log.Warn("third")
		if s := out.String(); !strings.Contains(s, `"msg":"second"`) || !strings.Contains(s, `"msg":"third"`) {
			t.Fatalf("a warn line and the info line before it are not out when Warn returns: %q", s)
		}

		before := len(out.String())
		line := strings.Repeat("x", 1023) + "\n"
		for range logFlushSize / len(line) {
			_, _ = w.Write([]byte(line))
		}
		if len(out.String())-before != logFlushSize {
			t.Fatalf("%d of %d bytes out without waiting for the interval", len(out.String())-before, logFlushSize)
		}
	})
}
