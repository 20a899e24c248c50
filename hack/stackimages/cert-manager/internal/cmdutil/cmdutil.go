// Package cmdutil holds what the three cert-manager commands of this module
// share: loading a configuration file over defaults, and running until a
// termination signal.
package cmdutil

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

// Configure fills cfg (an internal configuration type) from the defaults of
// the versioned type ext, then from the file named by --config if given,
// then from the flags fs defines over cfg. Flags win over the file, the
// file over defaults.
func Configure(scheme *runtime.Scheme, codecs *serializer.CodecFactory, ext, cfg runtime.Object, fs *pflag.FlagSet, args []string) error {
	var configFile string
	fs.StringVar(&configFile, "config", "", "path to a configuration file (flags take precedence)")
	scheme.Default(ext)
	if err := scheme.Convert(ext, cfg, nil); err != nil {
		return fmt.Errorf("defaulting the configuration: %w", err)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" {
		return nil
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("reading the configuration file: %w", err)
	}
	if err := runtime.DecodeInto(codecs.UniversalDecoder(), data, cfg); err != nil {
		return fmt.Errorf("decoding %s: %w", configFile, err)
	}
	// Parse again so that flags override what the file set.
	return fs.Parse(args)
}

// Main runs fn with a context cancelled on SIGINT or SIGTERM and exits
// non-zero with its error.
func Main(name string, fn func(ctx context.Context, args []string) error) {
	logf.InitLogs()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := fn(ctx, os.Args[1:])
	stop()
	logf.FlushLogs()
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
