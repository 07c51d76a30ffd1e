// Command lockstep keeps Docker Compose hosts in lockstep with git.
//
// This package owns the command line: commands, flags, output formats and
// exit codes, and the wiring of config into a pass runner. It never decides
// what to deploy itself (passes run through the runner interface), never
// writes anything but results to stdout, and keeps no state between
// invocations. The whole CLI is Run, a function of (args, stdout, stderr,
// environment) that tests call in-process; main only binds it to the
// process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGINT/SIGTERM cancel the context: the pass in flight stops at its
	// next step boundary instead of being killed mid-step.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
