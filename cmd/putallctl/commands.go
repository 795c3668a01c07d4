package main

import (
	"context"
	"fmt"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// command is a parsed subcommand: a request ready to send and a way to print the answer.
// It returns an error when the call, or any key of a batch, failed; run prints the keys a
// failed call reports.
type command interface {
	do(ctx context.Context, api kv.KVService, out printer) error
}

type putCmd struct{ req *kv.PutRequest }

func (c putCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	resp, err := api.Put(ctx, c.req)
	if err != nil {
		return err
	}
	out.print(record{Key: c.req.Key, Version: resp.Version, Created: resp.Created, Replayed: resp.Replayed})
	return nil
}

type getCmd struct{ req *kv.GetRequest }

func (c getCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	resp, err := api.Get(ctx, c.req)
	if err != nil {
		return err
	}
	if resp.Item == nil || !resp.Item.Found {
		return &kvclient.Error{Code: kv.ErrorCode_NOT_FOUND, Message: fmt.Sprintf("key %q not found", c.req.Key)}
	}
	out.print(itemRecord(resp.Item))
	return nil
}

type delCmd struct{ req *kv.DeleteRequest }

func (c delCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	resp, err := api.Delete(ctx, c.req)
	if err != nil {
		return err
	}
	out.print(record{Key: c.req.Key, Version: resp.Revision, Replayed: resp.Replayed})
	return nil
}

type putAllCmd struct{ req *kv.PutAllRequest }

func (c putAllCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	resp, err := api.PutAll(ctx, c.req)
	if err != nil {
		return err
	}
	return reportBatch(out, c.req.Entries, resp.Results, resp.Revision, resp.Replayed)
}

type getAllCmd struct{ req *kv.GetAllRequest }

// do prints every item, found or not: a missing key is an answer, not a failure.
func (c getAllCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	resp, err := api.GetAll(ctx, c.req)
	if err != nil {
		return err
	}
	for _, it := range resp.Items {
		out.print(itemRecord(it))
	}
	return nil
}

type scanCmd struct{ req *kv.ScanRequest }

// do prints every key of the scan, following every page; with keys_only, no values.
func (c scanCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	for it, err := range kvclient.ScanAll(ctx, api, c.req) {
		if err != nil {
			return err
		}
		r := itemRecord(it)
		if c.req.KeysOnly {
			r.Value = nil
		}
		out.print(r)
	}
	return nil
}

type delAllCmd struct{ req *kv.DeleteAllRequest }

func (c delAllCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	resp, err := api.DeleteAll(ctx, c.req)
	if err != nil {
		return err
	}
	return reportBatch(out, c.req.Entries, resp.Results, resp.Revision, resp.Replayed)
}

// reportBatch prints the results of a multi-key write of entries, one line per key, and
// returns an error when any key failed.
func reportBatch[E interface{ GetKey() string }](out printer, entries []E, results []*kv.KeyStatus, revision int64, replayed bool) error {
	results, err := kvclient.Statuses(entries, results, revision)
	if err != nil {
		return err
	}
	failed := 0
	for _, s := range results {
		out.print(record{Key: s.Key, Version: s.Version, Code: code(s.Code), Replayed: replayed})
		if s.Code != kv.ErrorCode_OK {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d keys failed", failed, len(results))
	}
	return nil
}
