package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// sinkCommand is `hookrelay sink`: plays the broker, as send plays the
// lender, so that a first run can see an event verified, delivered, refused
// and retried with hookrelay commands alone.
func sinkCommand(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use: "sink", Short: "Play the broker: a destination that prints what it receives", GroupID: "author",
		Long: "Listen on --listen (default the built-in destination's 127.0.0.1:3000), print every request\n" +
			"it receives (method, path, the relay's X-Hookrelay-* and Idempotency-Key headers, body) and\n" +
			"answer --status. With --status 400 deliveries fail as permanent and go dead; with 503 they\n" +
			"are retried. For trying the relay out, never for production. Stops on SIGINT or SIGTERM.",
		Example: "  hookrelay sink\n  hookrelay sink --status 400\n  hookrelay sink --listen 127.0.0.1:4000",
		Args:    noArgs,
	}
	listen := c.Flags().String("listen", "127.0.0.1:3000", "address to listen on")
	code := c.Flags().Int("status", http.StatusOK, "status to answer every request with")
	c.RunE = func(*cobra.Command, []string) error {
		if *code < 200 || *code > 599 {
			fmt.Fprintf(stderr, "hookrelay: --status %d is not an HTTP status\n", *code)
			return exitCode(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return status(runSink(ctx, *listen, *code, stdout, stderr))
	}
	return c
}

// sinkHeaders are the headers sink prints, in this order.
var sinkHeaders = []string{"Idempotency-Key", "X-Hookrelay-Event-Id", "X-Hookrelay-Provider",
	"X-Hookrelay-Event-Type", "X-Hookrelay-Attempt"}

func runSink(ctx context.Context, listen string, code int, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "hookrelay: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "sink: listening on %s, answering %d\n", ln.Addr(), code)
	var mu sync.Mutex // one request's lines together
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			// One write a request: its lines stay together, and printing
			// costs one system call, not one a line.
			var b bytes.Buffer
			fmt.Fprintf(&b, "%s %s %s -> %d\n", time.Now().UTC().Format(time.RFC3339), r.Method, r.URL.RequestURI(), code)
			for _, h := range sinkHeaders {
				if v := r.Header.Get(h); v != "" {
					fmt.Fprintf(&b, "  %s: %s\n", h, v)
				}
			}
			fmt.Fprintf(&b, "  %s\n", body)
			mu.Lock()
			_, _ = stdout.Write(b.Bytes())
			mu.Unlock()
			w.WriteHeader(code)
		}),
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "hookrelay: %v\n", err)
		return 1
	}
	return 0
}
