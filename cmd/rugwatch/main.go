package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rugwatch/rugwatch/sandbox"
)

func main() {
	sandbox.Init() // returns at once unless this process is a sandbox's init
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := &App{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, LookupEnv: os.LookupEnv}
	code := app.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
