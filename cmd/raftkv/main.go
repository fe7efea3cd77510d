// Command raftkv is the command-line client of a raftkv cluster.
//
//	raftkv --endpoints 127.0.0.1:7001,127.0.0.1:7002 put app/name shop
//	raftkv get app/name
//	raftkv watch --prefix app/
//
// Exit status: 0 on success, 1 when the operation failed (including a CAS
// that lost), 2 on usage errors.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// failure marks an error of the operation, as opposed to one of usage.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(err error) error {
	if err == nil {
		return nil
	}
	return &failure{err}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var f *failure
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code) // the command raftkv lock ran said it all
	case errors.As(err, &f):
		fmt.Fprintf(stderr, "raftkv: %v\n", f.err)
		return 1
	default:
		fmt.Fprintf(stderr, "raftkv: %v\nRun 'raftkv --help' for usage.\n", err)
		return 2
	}
}
