package dispatch

import (
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
)

// TestDestinationConfigErrors: values that would break delivery at run time
// are refused at load, naming their field.
func TestDestinationConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    config.DestinationConfig
		want string
	}{
		{"negative timeout", config.DestinationConfig{Timeout: -time.Second}, "timeout"},
		{"negative rate", config.DestinationConfig{Rate: -1}, "rate"},
		{"negative concurrency", config.DestinationConfig{Concurrency: -1}, "concurrency"},
		{"negative initial", config.DestinationConfig{Retry: config.RetryConfig{Initial: -time.Second}}, "retry.initial"},
		{"negative max", config.DestinationConfig{Retry: config.RetryConfig{Max: -time.Second}}, "retry.max"},
		{"negative schedule", config.DestinationConfig{Retry: config.RetryConfig{Schedule: []time.Duration{time.Second, -time.Second}}}, "retry.schedule[1]"},
		{"bad retry_on", config.DestinationConfig{Retry: config.RetryConfig{RetryOn: []string{"5xx", "often"}}}, "retry.retry_on[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.URL = "http://127.0.0.1:1/"
			_, err := NewDestination("d", &tc.c)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want+": ") {
				t.Fatalf("error %v, want one about %s", err, tc.want)
			}
		})
	}
}
