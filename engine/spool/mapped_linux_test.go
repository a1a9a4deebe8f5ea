package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mappedRSS is the resident size, in bytes, of this process's mappings of
// path, from /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer func() { _ = f.Close() }() // read only
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasSuffix(line, " "+path)
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += kb << 10
		}
	}
	must(t, sc.Err())
	return total
}

// TestReleaseMapped: after the queue scan the spool's file pages are no
// longer counted as the process's own, and every read still returns what
// was written (the pages come back from the page cache).
func TestReleaseMapped(t *testing.T) {
	b := mustOpen(t)
	base := time.Now().Add(-time.Hour)
	big := bytes.Repeat([]byte("x"), 900)
	const n = 6000             // more than one chunk of Pending: shorter scans keep their pages
	number := map[string]int{} // event id -> its n
	for i := 0; i < n; i += 500 {
		evs := make([]*Event, 0, 500)
		for j := i; j < i+500; j++ {
			ev := event(base.Add(time.Duration(j)*time.Millisecond), fmt.Sprintf("evt_%d", j), "crm")
			ev.Raw = append([]byte(fmt.Sprintf(`{"n":%d,"pad":"`, j)), append(big, `"}`...)...)
			evs = append(evs, ev)
			number[ev.ID] = j
		}
		done := make(chan error, len(evs))
		for _, ev := range evs {
			go func() { _, err := b.Append(context.Background(), ev, 0); done <- err }()
		}
		for range evs {
			must(t, <-done)
		}
	}
	b = reopen(t, b)

	// Touch every page: every event read back.
	var ids []string
	must(t, b.Queue("crm", func(d *Delivery) error { ids = append(ids, d.EventID); return nil }))
	for _, id := range ids {
		if _, err := b.Event(id); err != nil {
			t.Fatal(err)
		}
	}
	size := b.Size()
	touched := mappedRSS(t, b.path)
	if touched < size/2 {
		t.Fatalf("reading every event mapped in %d of %d bytes; the measurement is off", touched, size)
	}

	pending := 0
	must(t, b.Pending("crm", func(*QueuedDelivery) error { pending++; return nil }))
	if pending != n {
		t.Fatalf("%d pending, want %d", pending, n)
	}
	if after := mappedRSS(t, b.path); after > size/20 {
		t.Errorf("after the queue scan %d of %d bytes still mapped in (%d before)", after, size, touched)
	}
	for _, id := range ids {
		ev, err := b.Event(id)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"n":%d,`, number[id]); !bytes.HasPrefix(ev.Raw, []byte(want)) {
			t.Fatalf("event %s reads back as %.20q, want prefix %q", id, ev.Raw, want)
		}
	}
}
