// Package scriptrun runs the project's server scripts (script/redis-cluster.sh,
// script/etcd.sh) for the test helpers that start real servers: bounded in time, an
// installation with apt included, with the output kept for the error.
package scriptrun

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Run runs the script at path with args and env added to this process's environment, and
// returns its combined output. It kills the script once limit has passed; an error names the
// command and carries the output.
func Run(limit time.Duration, env []string, path string, args ...string) (string, error) {
	var out bytes.Buffer
	x := exec.Command(path, args...)
	x.Env = append(os.Environ(), env...)
	x.Stdout, x.Stderr = &out, &out
	x.WaitDelay = time.Second
	name := strings.Join(append([]string{path}, args...), " ")
	if err := x.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- x.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s: %w\n%s", name, err, out.String())
		}
		return out.String(), nil
	case <-time.After(limit):
		_ = x.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s did not finish within %v\n%s", name, limit, out.String())
	}
}
