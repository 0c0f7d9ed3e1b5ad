// Go clients against a real `strata serve`: franz-go (strict about the protocol) with kgo
// and kadm, and IBM's sarama. Each test starts its own broker from STRATA_BIN.
package compat

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type broker struct {
	addr string
	cmd  *exec.Cmd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBroker runs `strata serve` with its own data directory on a free port.
//
// With EXTERNAL_BOOTSTRAP=host:port the tests run against that broker instead (Apache Kafka
// as the oracle: scripts/kafka-peer start).
func startBroker(t *testing.T) *broker {
	t.Helper()
	if ext := os.Getenv("EXTERNAL_BOOTSTRAP"); ext != "" {
		return &broker{addr: ext}
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		bin = "../../target/debug/strata"
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(cfg, []byte("group_initial_rebalance_delay_ms = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "serve", "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--config", cfg)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	logPath := filepath.Join(dir, "strata.log")
	go func() {
		f, _ := os.Create(logPath)
		defer f.Close()
		s := bufio.NewScanner(out)
		signalled := false
		for s.Scan() {
			fmt.Fprintln(f, s.Text())
			if !signalled && strings.Contains(s.Text(), "listening on") {
				close(ready)
				signalled = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("strata did not start")
	}
	b := &broker{addr: addr, cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			if log, err := os.ReadFile(logPath); err == nil {
				t.Logf("broker log:\n%s", log)
			}
		}
	})
	return b
}

func unique(prefix string) string {
	return fmt.Sprintf("%s-%08x", prefix, rand.Uint32())
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}
