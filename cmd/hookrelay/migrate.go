package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hookrelay/hookrelay/engine"
)

// migrateTimeout bounds a whole migration.
const migrateTimeout = time.Hour

// migrate copies a stopped relay's queue between a bbolt spool file and the
// JetStream spool relay.yaml names (engine.Migrate) and prints what it
// copied.
func migrate(path string, explicit bool, opts engine.MigrateOptions, asJSON bool, stdout, stderr io.Writer) int {
	cfg, ok := load(path, explicit, stderr)
	if !ok {
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	n, err := engine.Migrate(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(stderr, "hookrelay migrate: %v\n", err)
		if n != nil {
			fmt.Fprintf(stderr, "hookrelay migrate: copied %d events before the error; run it again to copy the rest\n", n.Events)
		}
		return 1
	}
	if asJSON {
		return printValue(stdout, n)
	}
	from, to := opts.Bolt, "stream "+cfg.Spool.NATS.Stream
	if opts.ToBolt {
		from, to = to, from
	}
	fmt.Fprintf(stdout, "migrated %s -> %s: %d events (%d pending, %d dead, %d delivered deliveries), %d already there, "+
		"%d quarantined, %d paused, %d poll states\n", from, to, n.Events, n.Pending, n.Dead, n.Delivered, n.Present,
		n.Quarantined, n.Paused, n.PollStates)
	return 0
}
