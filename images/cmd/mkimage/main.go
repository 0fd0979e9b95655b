// Command mkimage builds idemgate's images with no container engine
// (make image) and pushes them (make image-push). The work is in package
// images; see README.md, "Images".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/idemgate/idemgate/images"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o images.Options
	var push string
	fs.StringVar(&o.Wasm, "wasm", "build/idempotency.wasm", "the module (make wasm)")
	fs.StringVar(&o.Out, "out", "build/images", "`DIR` for idempotency-wasm.tar and controlplane.tar")
	fs.StringVar(&o.ModuleDir, "module", ".", "`DIR` of the Go module (its ./controlplane is built)")
	fs.StringVar(&o.Tag, "tag", "dev", "image `TAG`")
	fs.StringVar(&o.Meta.Version, "version", "", "version stamped in the binary and the labels (make: git describe)")
	fs.StringVar(&o.Meta.Revision, "revision", "", "VCS revision stamped likewise (make: git rev-parse HEAD)")
	fs.StringVar(&o.Meta.Source, "source", "https://github.com/idemgate/idemgate", "repository `URL` for the source label")
	fs.Int64Var(&o.Created, "created", 0, "image time in Unix `SECONDS` (make: the last commit's, as SOURCE_DATE_EPOCH)")
	fs.StringVar(&o.LoadArch, "load-arch", "", "architecture whose image `docker load` tags TAG on Docker's classic store; default this machine's")
	fs.StringVar(&push, "push", "", "push the tarballs in -out to `REGISTRY` (host[:port][/path]) instead of building; auth from the Docker config")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mkimage: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if push != "" {
		p, err := images.PushDir(ctx, push, o.Tag, o.Out, remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			fmt.Fprintf(stderr, "mkimage: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "pushed %s\npushed %s\n", p.Wasm, p.ControlPlane)
		return 0
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 2
	}
	res, err := images.Build(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, res.String())
	return 0
}
