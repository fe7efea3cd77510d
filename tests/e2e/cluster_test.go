package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proccluster"
)

// buildOpts: race-checked binaries by default; RAFTKV_E2E_RACE=0 builds
// plain ones, for measuring (the race detector multiplies memory and CPU).
func buildOpts() proccluster.BuildOptions {
	return proccluster.BuildOptions{Race: os.Getenv("RAFTKV_E2E_RACE") != "0"}
}

func binary(t *testing.T, name string) string {
	return proccluster.Binary(t, "../..", name, buildOpts())
}

func startCluster(t *testing.T, n int) *proccluster.Cluster {
	return proccluster.Start(t, n, proccluster.Options{Root: "../..", Build: buildOpts()})
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	proccluster.WaitFor(t, timeout, what, cond)
}

func TestMain(m *testing.M) {
	code := m.Run()
	proccluster.Cleanup()
	os.Exit(code)
}
