// Command hserver is the ceiling (h) of the hot-path harness
// (engine/loadtest's TestHotPath, `make bench-h`): the strongest minimal
// durable webhook server, to compare the relay with. Per request it reads the
// body and puts it into bbolt; concurrent requests share one fsynced commit
// (group commit), and each is answered 200 only after the commit that holds
// its body. It verifies, maps and logs nothing. It runs in a process of its
// own, as the relay does, and only the harness starts it.
//
// It may import the standard library and bbolt only.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// put is one body waiting for the commit that holds it.
type put struct {
	body []byte
	done chan error
}

// maxBatch bounds one commit, as the relay's spool bounds its batches.
const maxBatch = 512

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	path := flag.String("db", "h.db", "bbolt file")
	flag.Parse()
	if err := run(*listen, *path); err != nil {
		fmt.Fprintln(os.Stderr, "hserver:", err)
		os.Exit(1)
	}
}

func run(listen, path string) error {
	// The spool's options: fsync on every commit (NoSync false), the
	// freelist not written per commit.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }() // after Serve: nothing is left to commit
	bucket := []byte("events")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return err
	}
	puts := make(chan put, maxBatch)
	go commit(db, bucket, puts)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 256<<10))
			if err != nil {
				http.Error(w, "cannot read body", http.StatusBadRequest)
				return
			}
			p := put{body: body, done: make(chan error, 1)}
			puts <- p
			if err := <-p.done; err != nil {
				http.Error(w, "cannot store", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"received":true}`))
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// commit is the one writer: it takes what is waiting (up to maxBatch) into
// one transaction, fsyncs it, and only then answers every put of it.
func commit(db *bolt.DB, bucket []byte, puts <-chan put) {
	batch := make([]put, 0, maxBatch)
	for p := range puts {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < maxBatch {
			select {
			case p := <-puts:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for _, p := range batch {
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), p.body); err != nil {
					return err
				}
			}
			return nil
		})
		for _, p := range batch {
			p.done <- err
		}
	}
}
