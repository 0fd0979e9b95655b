package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// dockerFaults performs faults on the Docker Compose stack
// (e2e/docker-compose.yml; services envoy, controlplane, redis, upstream).
type dockerFaults struct{ composeFile string }

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
	return d.compose(ctx, "start", "controlplane")
}

func (d dockerFaults) RestartControlPlane(ctx context.Context) error {
	return d.compose(ctx, "restart", "controlplane")
}

func (d dockerFaults) RestartRedis(ctx context.Context) error {
	return d.compose(ctx, "restart", "redis")
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
	d := dockerFaults{composeFile: file}
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
	return target{gateway: "http://" + gw, upstream: "http://" + up, faults: d, logs: logs}, func() {}, nil
}
