package redisstore

import (
	"testing"

	"github.com/putallkv/putallkv/internal/rediscluster"
)

// The tests share one Redis Cluster, started by script/redis-cluster.sh for this test binary.
// They do not run in parallel: the semantics scripts reset their slot between scripts.
func TestMain(m *testing.M) { rediscluster.Main(m) }
