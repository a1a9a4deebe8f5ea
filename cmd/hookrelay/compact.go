package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// compact rewrites the stopped relay's spool file without its free pages
// (spool.Compact) and prints its size before and after. It fails, exit 1,
// while the relay runs: the relay holds the spool's lock.
func compact(path string, explicit, asJSON bool, stdout, stderr io.Writer) int {
	cfg, ok := load(path, explicit, stderr)
	if !ok {
		return 1
	}
	if cfg.Spool.Kind == config.SpoolJetStream {
		fmt.Fprintln(stderr, "hookrelay compact: spool.kind is jetstream: the NATS servers compact their own files; nothing to do")
		return 1
	}
	before, after, err := spool.Compact(cfg.Spool.Path)
	if err != nil {
		if errors.Is(err, spool.ErrLocked) {
			fmt.Fprintf(stderr, "hookrelay compact: %s is in use: stop the relay first (%v)\n", cfg.Spool.Path, err)
			return 1
		}
		fmt.Fprintf(stderr, "hookrelay compact: %v\n", err)
		return 1
	}
	if asJSON {
		return printValue(stdout, map[string]any{"spool": cfg.Spool.Path, "bytes_before": before, "bytes_after": after})
	}
	fmt.Fprintf(stdout, "compacted %s: %s -> %s (%d -> %d bytes)\n", cfg.Spool.Path, human(before), human(after), before, after)
	return 0
}

// human writes a byte count in binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
