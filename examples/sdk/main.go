// Command sdk is the smallest program built on the putallkv Go SDK: it writes two keys in one
// ATOMIC PutAll, reads them back with GetAll and prints what it read. It is a module of its own,
// built by the test suite as a new user's program would be (go get, then go build), so that the
// SDK stays installable and light.
//
//	go run . -addr 127.0.0.1:8888
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8888", "a putallkv RPC address")
	prefix := flag.String("prefix", "example/", "prefix of the two keys written")
	flag.Parse()

	c, err := kvclient.New([]string{*addr})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	keys := []string{*prefix + "a", *prefix + "b"}
	put, err := c.PutAll(ctx, &kv.PutAllRequest{
		Entries: []*kv.Entry{{Key: keys[0], Value: []byte("1")}, {Key: keys[1], Value: []byte("2")}},
		Mode:    kv.WriteMode_ATOMIC,
	})
	if err != nil {
		log.Fatal(err)
	}
	got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("revision %d\n", put.Revision)
	for _, it := range got.Items {
		fmt.Printf("%s=%s version %d\n", it.Key, it.Value, it.Version)
	}
}
