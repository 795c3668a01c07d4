package service

import (
	"context"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// Get reads one key; an absent or expired key is NOT_FOUND.
func (s *Service) Get(ctx context.Context, req *kv.GetRequest) (resp *kv.GetResponse, err error) {
	defer s.metrics.observe(mGet, 1, &err)
	if code, msg := s.checkKey(req.Key); code != kv.ErrorCode_OK {
		return nil, kvError(code, "%s", msg)
	}
	items := make([]store.Item, 1)
	if _, err := s.engine.GetAll(ctx, []string{req.Key}, items); err != nil {
		return nil, storeError(err)
	}
	if !items[0].Found {
		return nil, kvError(kv.ErrorCode_NOT_FOUND, "key %q: no such key", req.Key)
	}
	return &kv.GetResponse{Item: toItem(req.Key, items[0])}, nil
}

func toItem(key string, it store.Item) *kv.Item {
	return &kv.Item{Key: key, Value: it.Value, Version: it.Version, Found: it.Found, ExpiresAtMs: it.ExpiresAtMs}
}

// GetAll reads many keys as of one revision.
func (s *Service) GetAll(ctx context.Context, req *kv.GetAllRequest) (resp *kv.GetAllResponse, err error) {
	defer s.metrics.observe(mGetAll, len(req.Keys), &err)
	if err := s.checkBatchSize(len(req.Keys)); err != nil {
		return nil, err
	}
	for i, k := range req.Keys {
		if code, msg := s.checkKey(k); code != kv.ErrorCode_OK {
			return nil, entryError(i, k, code, "%s", msg)
		}
	}
	items := make([]store.Item, len(req.Keys))
	rev, err := s.engine.GetAll(ctx, req.Keys, items)
	if err != nil {
		return nil, storeError(err)
	}
	out := &kv.GetAllResponse{Items: make([]*kv.Item, len(items)), Revision: rev}
	for i, it := range items {
		out.Items[i] = toItem(req.Keys[i], it)
	}
	return out, nil
}
