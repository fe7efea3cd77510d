//go:build linux

package patroni

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

//go:embed patroni.yml.tmpl
var configTemplate string

// The cluster-wide Patroni timings of patroni.yml.tmpl.
const (
	ttl          = 20 * time.Second
	loopWait     = 2 * time.Second
	retryTimeout = 9 * time.Second
)

// tools is what the test runs: Patroni, PostgreSQL's binaries, and the
// user they run as.
type tools struct {
	patroni string
	binDir  string
	cred    *syscall.Credential // nil: as the test's own user
	uid     int
	gid     int
}

const installHint = "scripts/test.sh installs them when run as root; by hand: apt-get install patroni python3-consul postgresql"

// findTools finds Patroni and PostgreSQL, or fails the test saying how to
// get them: a missing tool is an error, not a skip.
func findTools(t *testing.T) tools {
	t.Helper()
	var tl tools
	var err error
	if tl.patroni, err = exec.LookPath("patroni"); err != nil {
		t.Fatalf("no patroni on PATH (%v): %s", err, installHint)
	}
	// Patroni's consul DCS needs python-consul, which Debian's patroni
	// package only suggests (it depends on one DCS client of several).
	if interp := shebang(tl.patroni); interp != "" {
		if out, err := exec.Command(interp, "-c", "import consul").CombinedOutput(); err != nil {
			t.Fatalf("patroni's python (%s) has no consul module, which its consul DCS needs: %v\n%s\n%s", interp, err, out, installHint)
		}
	}
	tl.binDir = os.Getenv("RAFTKV_PG_BIN_DIR")
	if tl.binDir == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
		if len(dirs) > 0 {
			tl.binDir = dirs[0]
		}
	}
	for _, bin := range []string{"postgres", "initdb", "pg_basebackup", "pg_rewind", "psql"} {
		if _, err := os.Stat(filepath.Join(tl.binDir, bin)); err != nil {
			t.Fatalf("no PostgreSQL server binaries in %q (set RAFTKV_PG_BIN_DIR): %v; %s", tl.binDir, err, installHint)
		}
	}
	tl.uid, tl.gid = os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, Patroni and PostgreSQL must run as the postgres user, which does not exist (%v): %s", err, installHint)
		}
		tl.uid, _ = strconv.Atoi(u.Uid)
		tl.gid, _ = strconv.Atoi(u.Gid)
		tl.cred = &syscall.Credential{Uid: uint32(tl.uid), Gid: uint32(tl.gid), Groups: []uint32{}}
	}
	return tl
}

func shebang(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if fields := strings.Fields(strings.TrimPrefix(line, "#!")); strings.HasPrefix(line, "#!") && len(fields) > 0 {
		if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
			return fields[1]
		}
		return fields[0]
	}
	return ""
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// member is one Patroni process and the PostgreSQL it manages.
type member struct {
	name     string
	node     int // the raftkv node its consul DCS talks to
	dir      string
	dataDir  string
	apiPort  int
	pgPort   int
	config   string
	logPath  string
	cmd      *exec.Cmd
	waitDone chan struct{}
}

// pgCluster is the Patroni cluster and the raftkv cluster under it.
type pgCluster struct {
	t       *testing.T
	tools   tools
	rk      *proccluster.Cluster
	scope   string
	members []*member
	api     *http.Client
	checker *splitBrainChecker
}

// newPGCluster writes the members' configurations (member i uses raftkv
// node i) without starting them.
func newPGCluster(t *testing.T, tl tools, rk *proccluster.Cluster, n int) *pgCluster {
	t.Helper()
	base := t.TempDir()
	// The postgres user must reach the directories t.TempDir makes (0700).
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &pgCluster{t: t, tools: tl, rk: rk, scope: "raftkv-patroni",
		api: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	tmpl := template.Must(template.New("patroni.yml").Parse(configTemplate))
	for i := range n {
		m := &member{name: "pg" + strconv.Itoa(i+1), node: i, dir: filepath.Join(base, "pg"+strconv.Itoa(i+1)),
			apiPort: proccluster.FreePort(t), pgPort: proccluster.FreePort(t)}
		m.dataDir = filepath.Join(m.dir, "data")
		m.config = filepath.Join(m.dir, "patroni.yml")
		m.logPath = filepath.Join(m.dir, "patroni.log")
		if err := os.Mkdir(m.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		err := tmpl.Execute(&b, map[string]any{
			"Scope": c.scope, "Name": m.name, "APIPort": m.apiPort, "PGPort": m.pgPort,
			"ConsulPort": strings.TrimPrefix(rk.Procs[m.node].Addr, "127.0.0.1:"),
			"Dir":        m.dir, "BinDir": tl.binDir,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.config, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(m.dir, tl.uid, tl.gid); err != nil {
			t.Fatal(err)
		}
		c.members = append(c.members, m)
	}
	t.Cleanup(c.killAll)
	return c
}

// start runs member m's Patroni, as the postgres user when the test is
// root, in a process group of its own.
func (c *pgCluster) start(m *member) {
	c.t.Helper()
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer log.Close() // the child has its own copy
	fmt.Fprintf(log, "=== test: start %s (DCS: raftkv node %s at %s)\n", time.Now().Format(time.RFC3339Nano), c.rk.Procs[m.node].ID, c.rk.Procs[m.node].Addr)
	cmd := exec.Command(c.tools.patroni, m.config)
	cmd.Dir = m.dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + m.dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	// A file, not a pipe: the postmaster inherits it and outlives Patroni
	// when Patroni is killed, and Wait must not wait for it.
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: c.tools.cred,
		// If the test process dies, Patroni stops its PostgreSQL and exits.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", m.name, err)
	}
	m.cmd, m.waitDone = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(cmd, m.waitDone)
}

// kill is a crash of member m's machine: SIGKILL to Patroni's process group
// (Patroni and whatever it runs: pg_basebackup, pg_rewind...) and to the
// postmaster's (PostgreSQL and its backends), then waits until none of it
// is left.
func (c *pgCluster) kill(m *member) {
	c.t.Helper()
	groups := killMember(m)
	c.appendLog(m, "=== test: killed (kill -9 of Patroni's and the postmaster's process groups) %s\n", time.Now().Format(time.RFC3339Nano))
	if err := c.waitGone(m, groups, 20*time.Second); err != nil {
		c.t.Fatalf("%s: %v", m.name, err)
	}
}

// killMember sends SIGKILL to member m's Patroni's and postmaster's process
// groups and returns them.
func killMember(m *member) []int {
	var groups []int
	if pm := postmasterPID(m.dataDir); pm > 0 {
		// The postmaster's group is that of the helper that started it
		// (setsid) and exited; its backends are in it too.
		if p, ok := readProc(pm); ok {
			groups = append(groups, p.pgid)
		}
	}
	if m.cmd != nil {
		groups = append(groups, m.cmd.Process.Pid) // Setpgid
	}
	for _, g := range groups {
		killGroup(g)
	}
	return groups
}

// waitGone waits until member m's Patroni has exited and no process of its
// process groups or of its directory is left, killing stragglers (a
// postmaster Patroni was starting as it was killed).
func (c *pgCluster) waitGone(m *member, groups []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if m.cmd != nil {
		select {
		case <-m.waitDone:
		case <-time.After(timeout):
			return fmt.Errorf("patroni (pid %d) still running %s after SIGKILL", m.cmd.Process.Pid, timeout)
		}
		m.cmd = nil
	}
	for {
		left := procsMentioning(m.dir)
		for _, p := range allProcs() {
			if p.state != 'Z' && slices.Contains(groups, p.pgid) && !slices.ContainsFunc(left, func(q procInfo) bool { return q.pid == p.pid }) {
				left = append(left, p)
			}
		}
		for _, p := range left {
			killGroup(p.pgid)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left after kill -9:\n%s", describeProcs(left))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killAll kills every member at the end of the test and checks that no
// Patroni or PostgreSQL process is left.
func (c *pgCluster) killAll() {
	groups := map[*member][]int{}
	for _, m := range c.members {
		groups[m] = killMember(m)
	}
	for _, m := range c.members {
		if err := c.waitGone(m, groups[m], 20*time.Second); err != nil {
			c.t.Errorf("%s: %v", m.name, err)
		}
		if c.t.Failed() {
			c.t.Logf("--- log of %s (Patroni and PostgreSQL), tail ---\n%s", m.name, tail(c.logText(m), 12000))
		}
	}
}

func (c *pgCluster) appendLog(m *member, format string, args ...any) {
	if f, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, format, args...)
		f.Close()
	}
}

func (c *pgCluster) logText(m *member) string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

// logSize is where member m's log ends now: logSince(m, logSize(m)) is what
// it logs from now on.
func logSize(m *member) int64 {
	st, err := os.Stat(m.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

func logSince(m *member, off int64) string {
	f, err := os.Open(m.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	f.Seek(off, io.SeekStart)
	b, _ := io.ReadAll(f)
	return string(b)
}

// grepLines returns the lines of s that match re.
func grepLines(s string, re *regexp.Regexp) []string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if re.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// status is Patroni's GET /patroni.
type status struct {
	State               string `json:"state"`
	Role                string `json:"role"`
	Timeline            int    `json:"timeline"`
	PostmasterStartTime string `json:"postmaster_start_time"`
	DCSLastSeen         int64  `json:"dcs_last_seen"`
	Replication         []struct {
		Name  string `json:"application_name"`
		State string `json:"state"`
	} `json:"replication"`
}

// primary: PostgreSQL is up and out of recovery. Patroni fills role from
// its own query of the server (pg_is_in_recovery()), and state is
// "running" only when that query succeeded, so this is the server's own
// word that it takes writes, not Patroni's intent. Patroni 3.0 says
// "master"; later versions "primary".
func (s status) primary() bool {
	return s.State == "running" && (s.Role == "master" || s.Role == "primary")
}

func (s status) replica() bool { return s.State == "running" && s.Role == "replica" }

func (s status) streaming(name string) bool {
	for _, r := range s.Replication {
		if r.Name == name && r.State == "streaming" {
			return true
		}
	}
	return false
}

func (c *pgCluster) status(m *member) (status, error) {
	var s status
	resp, err := c.api.Get("http://127.0.0.1:" + strconv.Itoa(m.apiPort) + "/patroni")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("GET /patroni on %s: %d %q: %v", m.name, resp.StatusCode, b, err)
	}
	return s, nil
}

// healthy waits until exactly one member is primary and every other member
// a running replica streaming from it, and returns the primary.
func (c *pgCluster) healthy(timeout time.Duration) *member {
	c.t.Helper()
	var primary *member
	testsupport.WaitFor(c.t, timeout, "one primary and every other member a streaming replica", func() error {
		primary = nil
		sts := map[*member]status{}
		for _, m := range c.members {
			s, err := c.status(m)
			if err != nil {
				return fmt.Errorf("%s: %v", m.name, err)
			}
			sts[m] = s
			if s.primary() {
				if primary != nil {
					return fmt.Errorf("%s and %s both report primary", primary.name, m.name)
				}
				primary = m
			}
		}
		if primary == nil {
			return fmt.Errorf("no primary: %s", describe(sts))
		}
		for _, m := range c.members {
			if m == primary {
				continue
			}
			if !sts[m].replica() || !sts[primary].streaming(m.name) {
				return fmt.Errorf("%s not a streaming replica of %s yet: %s", m.name, primary.name, describe(sts))
			}
		}
		return nil
	})
	return primary
}

func describe(sts map[*member]status) string {
	var parts []string
	for m, s := range sts {
		parts = append(parts, fmt.Sprintf("%s=%s/%s/tl%d", m.name, s.Role, s.State, s.Timeline))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// psql runs one SQL command on member m's PostgreSQL, over TCP as the
// superuser, and returns its unaligned output.
func (c *pgCluster) psql(m *member, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.tools.binDir, "psql"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(m.pgPort), "-U", "postgres", "-d", "postgres",
		"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=2", "PGAPPNAME=raftkv-patroni-test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql on %s: %v: %s", m.name, err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// insert writes one row through member m; an error if m does not take
// writes (down, or in recovery: "cannot execute INSERT in a read-only
// transaction").
func (c *pgCluster) insert(m *member, tag string) error {
	_, err := c.psql(m, "INSERT INTO writes(tag) VALUES ('"+tag+"')")
	return err
}

// rkPut writes a key through raftkv node i with Consul's API, as Patroni
// would; the client waits up to 15 s (longer than any hold).
func (c *pgCluster) rkPut(hc *http.Client, i int, key string) error {
	req, err := http.NewRequest(http.MethodPut, c.rk.URL(c.rk.Procs[i].Addr, "/v1/kv/"+key), strings.NewReader(time.Now().Format(time.RFC3339Nano)))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}
