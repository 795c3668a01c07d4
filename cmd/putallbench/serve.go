package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/server"

	"github.com/putallkv/putallkv/conf"
	"github.com/putallkv/putallkv/handler"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	srvconfig "github.com/putallkv/putallkv/pkg/config"
)

// emptyKV answers every call at once with an empty response: served with putallkv's own
// Kitex options (handler.ServerOptions), it measures what the framework alone costs for a
// request of the same shape.
type emptyKV struct{}

func (emptyKV) Put(context.Context, *kv.PutRequest) (*kv.PutResponse, error) {
	return &kv.PutResponse{}, nil
}
func (emptyKV) Get(context.Context, *kv.GetRequest) (*kv.GetResponse, error) {
	return &kv.GetResponse{Item: &kv.Item{}}, nil
}
func (emptyKV) Delete(context.Context, *kv.DeleteRequest) (*kv.DeleteResponse, error) {
	return &kv.DeleteResponse{}, nil
}

// PutAll reports every entry applied, so the load generator counts its keys as written.
func (emptyKV) PutAll(_ context.Context, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	return &kv.PutAllResponse{Applied: int32(len(req.Entries))}, nil
}

// PutAllMany answers each call as PutAll does.
func (e emptyKV) PutAllMany(ctx context.Context, req *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
	resp := &kv.PutAllManyResponse{Outcomes: make([]*kv.PutAllOutcome, len(req.Calls))}
	for i, call := range req.Calls {
		r, _ := e.PutAll(ctx, call)
		resp.Outcomes[i] = &kv.PutAllOutcome{Response: r}
	}
	return resp, nil
}

func (emptyKV) GetAll(context.Context, *kv.GetAllRequest) (*kv.GetAllResponse, error) {
	return &kv.GetAllResponse{}, nil
}

func (emptyKV) Scan(context.Context, *kv.ScanRequest) (*kv.ScanResponse, error) {
	return &kv.ScanResponse{}, nil
}

// Load acknowledges every chunk as applied, at once.
func (emptyKV) Load(ctx context.Context, stream kv.KVService_LoadServer) error {
	for {
		c, err := stream.Recv(ctx)
		if err != nil {
			return nil // the client closed its side, or the stream ended
		}
		if err := stream.Send(ctx, &kv.LoadAck{Chunk: c.Chunk, Applied: int32(len(c.Entries))}); err != nil {
			return err
		}
	}
}

func (emptyKV) DeleteAll(_ context.Context, req *kv.DeleteAllRequest) (*kv.DeleteAllResponse, error) {
	return &kv.DeleteAllResponse{Applied: int32(len(req.Entries))}, nil
}

// serve runs the empty KVService until ctx ends.
func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("putallbench serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8899", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "putallbench serve: %v\n", err)
		return 1
	}
	cfg, err := srvconfig.Load(conf.Default, "", nil) // the server's default request size limit
	if err != nil {
		fmt.Fprintf(stderr, "putallbench serve: %v\n", err)
		return 1
	}
	stop := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	svr := kvservice.NewServer(&emptyKV{}, append(handler.ServerOptions(handler.Transport{
		MaxRequestBytes: cfg.Server.MaxRequestBytes, DrainTimeout: cfg.Server.DrainTimeout, Logger: log}),
		server.WithListener(ln),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "putallkv-empty"}),
		server.WithExitSignal(func() <-chan error { return stop }),
	)...)
	done := make(chan error, 1)
	go func() { done <- svr.Run() }()
	fmt.Fprintf(stderr, "putallbench serve: empty KVService on %s\n", ln.Addr())
	select {
	case <-ctx.Done():
		stop <- nil
		err = <-done
	case err = <-done:
	}
	if err != nil {
		fmt.Fprintf(stderr, "putallbench serve: %v\n", err)
		return 1
	}
	return 0
}
