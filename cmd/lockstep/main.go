// Command lockstep keeps Docker Compose hosts in lockstep with git. The
// whole command line is cli.Run; main only binds it to the process:
// SIGINT/SIGTERM cancel the context, so the pass in flight stops at its
// next step boundary instead of being killed mid-step.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// Deploy windows name IANA time zones; a host (or a container image)
	// without /usr/share/zoneinfo must still read them.
	_ "time/tzdata"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
