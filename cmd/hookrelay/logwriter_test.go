package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestLogWriterKeepsEveryLine: lines from concurrent loggers all arrive,
// whole and each logger's in its order, by Close, and a line written alone
// is out when its Write returns.
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
	if _, err := w.Write([]byte("alone\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "alone\n") {
		t.Fatal("a line written while no write was under way is not out when Write returns")
	}
}
