package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
)

// register registers this relay's callback URL with a lender, or removes it
// (SPEC 1, 9). The engine's error names the request and the lender's answer
// with every secret of the register block masked.
func register(config string, explicit bool, provider string, unregister, asJSON bool, stdout, stderr io.Writer) int {
	verb := "register"
	if unregister {
		verb = "unregister"
	}
	cfg, ok := load(config, explicit, stderr)
	if !ok {
		return 1
	}
	p := cfg.Provider(provider)
	if p == nil {
		fmt.Fprintf(stderr, "hookrelay %s: no provider %q\n", verb, provider)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Register(ctx, unregister); err != nil {
		fmt.Fprintln(stderr, "hookrelay:", err)
		return 1
	}
	if asJSON {
		return printValue(stdout, map[string]any{"provider": p.Name, verb + "ed": true})
	}
	fmt.Fprintf(stdout, "%sed %s\n", verb, p.Name)
	return 0
}
