package e2e

import (
	"os"
	"testing"

	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
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

func TestMain(m *testing.M) {
	code := m.Run()
	proccluster.Cleanup()
	os.Exit(code)
}
