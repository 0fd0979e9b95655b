package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// dockerFaults performs faults on the Docker Compose stack
// (e2e/docker-compose.yml; services envoy, controlplane, redis, upstream).
type dockerFaults struct {
	composeFile  string
	controlPlane string // its published host:port
}

func (d dockerFaults) compose(ctx context.Context, verb, service string) error {
	cmd := exec.CommandContext(ctx, "docker", "compose", "-f", d.composeFile, verb, service)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker compose %s %s: %w\n%s", verb, service, err, out)
	}
	return nil
}

func (d dockerFaults) KillControlPlane(ctx context.Context) error {
	return d.compose(ctx, "kill", "controlplane")
}

func (d dockerFaults) StartControlPlane(ctx context.Context) error {
	return d.composeReady(ctx, "start", "controlplane")
}

func (d dockerFaults) RestartControlPlane(ctx context.Context) error {
	return d.composeReady(ctx, "restart", "controlplane")
}

func (d dockerFaults) RestartRedis(ctx context.Context) error {
	return d.composeReady(ctx, "restart", "redis")
}

// composeReady runs the verb, then waits until the control plane (published
// on its default address) is ready again: /readyz answers 200 only when it
// serves and Redis answers, as the local stack's faults wait too.
func (d dockerFaults) composeReady(ctx context.Context, verb, service string) error {
	if err := d.compose(ctx, verb, service); err != nil {
		return err
	}
	return waitHTTP(ctx, "http://"+d.controlPlane+"/readyz", 200)
}

// waitHTTP polls url until it answers want (0: any answer), for at most a
// minute.
func waitHTTP(ctx context.Context, url string, want int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if want == 0 || resp.StatusCode == want {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after a minute: %s", url, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// dockerTarget addresses a Compose stack someone else brought up (make
// e2e-docker).
func dockerTarget() (target, func(), error) {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	file, err := filepath.Abs("docker-compose.yml")
	if err != nil {
		return target{}, nil, err
	}
	d := dockerFaults{composeFile: file, controlPlane: env("IDEM_CONTROLPLANE_ADDR", "127.0.0.1:8081")}
	logs := func() string {
		out, err := exec.Command("docker", "compose", "-f", file, "logs", "--tail", "100").CombinedOutput()
		if err != nil {
			return fmt.Sprintf("docker compose logs: %v\n%s", err, out)
		}
		return string(out)
	}
	gw := env("IDEM_GATEWAY_ADDR", "127.0.0.1:8080")
	up := env("IDEM_UPSTREAM_ADDR", "127.0.0.1:9000")
	for _, a := range []string{gw, up} {
		if strings.Contains(a, "://") {
			return target{}, nil, fmt.Errorf("address %q: want host:port, no scheme", a)
		}
	}
	// `docker compose up -d` returns before Envoy listens.
	ctx := context.Background()
	for _, u := range []string{"http://" + up + "/__executions", "http://" + d.controlPlane + "/readyz"} {
		if err := waitHTTP(ctx, u, 200); err != nil {
			return target{}, nil, err
		}
	}
	if err := waitHTTP(ctx, "http://"+gw+"/", 0); err != nil {
		return target{}, nil, err
	}
	return target{gateway: "http://" + gw, upstream: "http://" + up, faults: d, logs: logs}, func() {}, nil
}
