package loadtest

import (
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// okBody is what every benchmark server answers, like the provider's respond.
var okBody = []byte(`{"success":true}`)

func answerOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(okBody)
}

// startBaselineHTTP serves the HTTP ceiling (g): read the body, answer 200.
// It returns the ingest URL.
func startBaselineHTTP(tb testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answerOK(w)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/in/example"
}

// BenchmarkBaselineHTTP is the HTTP ceiling (g): read the body, answer 200.
func BenchmarkBaselineHTTP(b *testing.B) {
	drive(b, hmacSource(startBaselineHTTP(b), 0, b.N))
}

// boltPut is one body waiting for its batch's commit.
type boltPut struct {
	body []byte
	done chan error
}

// boltGroup is the smallest group commit: one writer drains the channel into
// one fsynced db.Update per batch (NoSync stays false). It opens bbolt with
// the spool's options. It returns the channel and the count of commits.
func boltGroup(tb testing.TB) (chan<- boltPut, *atomic.Int64) {
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "baseline.db"), 0o600,
		&bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	bucket := []byte("b")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	const maxBatch = 512
	ch := make(chan boltPut, maxBatch)
	stopped := make(chan struct{})
	commits := new(atomic.Int64)
	go func() {
		defer close(stopped)
		batch := make([]boltPut, 0, maxBatch)
		for p := range ch {
			batch = append(batch[:0], p)
		fill:
			for len(batch) < maxBatch {
				select {
				case p, ok := <-ch:
					if !ok {
						break fill
					}
					batch = append(batch, p)
				default:
					break fill
				}
			}
			err := db.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket(bucket)
				for _, p := range batch {
					seq, err := bk.NextSequence()
					if err != nil {
						return err
					}
					if err := bk.Put(binary.BigEndian.AppendUint64(nil, seq), p.body); err != nil {
						return err
					}
				}
				return nil
			})
			commits.Add(1)
			for _, p := range batch {
				p.done <- err
			}
		}
	}()
	tb.Cleanup(func() {
		close(ch)
		<-stopped
		_ = db.Close()
	})
	return ch, commits
}

// startBaselineBoltPut serves the durable-answer ceiling (h): the HTTP
// baseline plus a group-committed bbolt put of the body before the 200. It
// returns the ingest URL and the count of commits.
func startBaselineBoltPut(tb testing.TB) (string, *atomic.Int64) {
	puts, commits := boltGroup(tb)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p := boltPut{body: body, done: make(chan error, 1)}
		puts <- p
		if err := <-p.done; err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		answerOK(w)
	}))
	// Registered after boltGroup's cleanup, so it runs first: no handler is
	// left sending on the closed channel.
	tb.Cleanup(srv.Close)
	return srv.URL + "/in/example", commits
}

// BenchmarkBaselineBoltPut is the durable-answer ceiling (h).
func BenchmarkBaselineBoltPut(b *testing.B) {
	url, commits := startBaselineBoltPut(b)
	drive(b, hmacSource(url, 0, b.N))
	b.ReportMetric(float64(b.N)/float64(max(1, commits.Load())), "req/commit")
}
