package crashtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/logstore"
)

// Knobs, from the environment:
//
//	RAFTKV_CRASH_CYCLES=5000  kill cycles per log store, however long they take
//	                          (default: 150, or fewer past 40 s; 20 with -short)
//	RAFTKV_CRASH_SEED=123     replay a seed: the same workloads and kill plans
//	                          (where a kill lands still varies with timing)
const (
	envCycles = "RAFTKV_CRASH_CYCLES"
	envReplay = "RAFTKV_CRASH_SEED"
)

// tailWindow: a kill this soon after a tail truncation was acknowledged
// catches the log store with the truncation's effects freshly on disk.
const tailWindow = 5 * time.Millisecond

func TestCrashRecovery(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envReplay); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", envReplay, err)
		}
	}
	// CI: 150 cycles per store, about 25 s each with -race on two cores;
	// on a slower or busier machine, fewer, to stay in its time budget.
	cycles, budget := 150, 40*time.Second
	if testing.Short() {
		cycles = 20
	}
	if s := os.Getenv(envCycles); s != "" {
		var err error
		if cycles, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s: %v", envCycles, err)
		}
		budget = 0
	}
	t.Logf("seed %d (replay: %s=%d)", seed, envReplay, seed)
	for _, kind := range []logstore.Kind{logstore.WAL, logstore.BoltDB} {
		t.Run(string(kind), func(t *testing.T) { crashLoop(t, kind, seed, cycles, budget) })
	}
}

// crashLoop runs up to cycles children (for up to budget, 0: no limit) on
// one data dir, each killed at a random moment, then a last one that only
// reports what it finds.
func crashLoop(t *testing.T, kind logstore.Kind, seed uint64, cycles int, budget time.Duration) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(seed, uint64(len(kind)))) // each store its own stream
	m, ref, st := newModel(), newReference(t), &stats{inDoubt: map[string]int{}}
	start := time.Now()
	defer func() { t.Logf("%s after %v: %s", kind, time.Since(start).Round(time.Millisecond), st.report(m, ref)) }()
	for c := 1; ; c++ {
		final := c > cycles || (budget > 0 && time.Since(start) > budget)
		cy := &cycle{n: c, seed: r.Uint64(), final: final, plan: newKillPlan(r), last: make([]string, 0, 24)}
		if err := cy.run(t, dir, kind, m, ref, st); err != nil {
			t.Fatalf("%s, cycle %d (seed %d, child seed %d, %s, op in doubt: %v):\n%v", kind, c, seed, cy.seed, cy.plan, m.pending, err)
		}
		if final {
			return
		}
		st.cycles = c
	}
}

// killPlan says when to SIGKILL a child: a random time after it is ready
// (from 1 to 300 ms, log-uniform, so that both short and long runs are
// common), or just after its n-th acknowledged tail truncation.
type killPlan struct {
	after     time.Duration
	afterTail int
	delay     time.Duration
}

func newKillPlan(r *rand.Rand) killPlan {
	if r.IntN(5) < 2 {
		return killPlan{after: 500 * time.Millisecond, afterTail: 1 + r.IntN(3), delay: time.Duration(r.IntN(2000)) * time.Microsecond}
	}
	return killPlan{after: time.Duration(math.Exp(math.Log(1e6) + r.Float64()*math.Log(300)))}
}

func (p killPlan) String() string {
	if p.afterTail > 0 {
		return fmt.Sprintf("kill %v after tail truncation #%d", p.delay, p.afterTail)
	}
	return fmt.Sprintf("kill after %v", p.after.Round(time.Microsecond))
}

type cycle struct {
	n     int
	seed  uint64
	final bool // only observe, do not kill
	plan  killPlan
	last  []string // the child's last lines (a failure's context)

	cmd      *exec.Cmd
	mu       sync.Mutex
	killedAt time.Time // zero: not killed (yet)
}

// kill is called by a timer, or by the test when it stops.
func (c *cycle) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.killedAt.IsZero() {
		c.killedAt = time.Now()
		c.cmd.Process.Kill()
	}
}

func (c *cycle) killTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killedAt
}

func (c *cycle) run(t *testing.T, dir string, kind logstore.Kind, m *model, ref *reference, st *stats) error {
	mode := "run"
	if c.final {
		mode = "observe"
	}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envMode+"="+mode, envDir+"="+dir, envKind+"="+string(kind),
		envSeed+"="+strconv.FormatUint(c.seed, 10), envCommit+"="+strconv.FormatUint(m.commit, 10))
	c.cmd.SysProcAttr = procAttr()
	stderr := &tailBuffer{}
	c.cmd.Stderr = stderr
	stdin, err := c.cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("child's stdin: %w", err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("child's stdout: %w", err)
	}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start child: %w", err)
	}
	var waitOnce sync.Once
	var waitErr error
	wait := func() error { waitOnce.Do(func() { waitErr = c.cmd.Wait() }); return waitErr }
	t.Cleanup(func() { c.kill(); wait() })

	observed, tailAcks, err := c.read(stdout, stdin, m, ref, st)
	if err != nil {
		c.kill()
		wait()
		return fmt.Errorf("%w\nthe child's last lines:\n  %s\nits stderr: %s", err, strings.Join(c.last, "\n  "), stderr)
	}
	werr := wait()
	if strings.Contains(stderr.String(), "DATA RACE") {
		return fmt.Errorf("the child found a data race:\n%s", stderr)
	}
	if !observed {
		return fmt.Errorf("the child died before reporting what it found (%v):\n%s", werr, stderr)
	}
	var exit *exec.ExitError
	killedAt := c.killTime()
	killed := errors.As(werr, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL && !killedAt.IsZero()
	if (c.final && werr != nil) || (!c.final && !killed) {
		return fmt.Errorf("the child exited by itself (%v):\n%s", werr, stderr)
	}
	for i := len(tailAcks) - 1; i >= 0 && !c.final; i-- {
		if !tailAcks[i].After(killedAt) {
			if killedAt.Sub(tailAcks[i]) <= tailWindow {
				st.tailKills++
			}
			break
		}
	}
	return nil
}

// read follows the child's output until it dies: it judges the observation,
// lets the workload start, arms the kill and keeps the model up to date.
// It returns whether the child reported its observation, and when tail
// truncations were acknowledged.
func (c *cycle) read(stdout io.Reader, stdin io.WriteCloser, m *model, ref *reference, st *stats) (bool, []time.Time, error) {
	defer stdin.Close()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	observed := false
	var tailAcks []time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for sc.Scan() {
		line := sc.Text()
		if len(c.last) == cap(c.last) {
			c.last = c.last[1:]
		}
		c.last = append(c.last, line)
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			return observed, nil, fmt.Errorf("empty line from the child")
		case f[0] == "O":
			observed = true
			var obs observation
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "O ")), &obs); err != nil {
				return observed, nil, fmt.Errorf("read observation: %w", err)
			}
			problems, err := m.judge(&obs, ref, st)
			if err != nil {
				return observed, nil, err
			}
			if len(problems) > 0 {
				return observed, nil, fmt.Errorf("the data dir, opened again, breaks what was acknowledged:\n  %s", strings.Join(problems, "\n  "))
			}
			if _, err := io.WriteString(stdin, "go\n"); err != nil && !c.final {
				return observed, nil, fmt.Errorf("start the workload: %w", err)
			}
		case f[0] == "R":
			timer = time.AfterFunc(c.plan.after, c.kill)
		case f[0] == "F":
			return observed, nil, fmt.Errorf("the child failed: %s", strings.TrimPrefix(line, "F "))
		default:
			if err := m.line(f, st); err != nil {
				return observed, nil, fmt.Errorf("child's line %q: %w", line, err)
			}
			if len(f) > 1 && f[0] == "A" && f[1] == "tail" {
				tailAcks = append(tailAcks, time.Now())
				if len(tailAcks) == c.plan.afterTail && timer != nil {
					timer.Stop()
					timer = time.AfterFunc(c.plan.delay, c.kill)
				}
			}
		}
	}
	return observed, tailAcks, sc.Err()
}

// tailBuffer keeps the end of what a child writes to stderr.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 32<<10 {
		t.b = t.b[len(t.b)-32<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

type stats struct {
	cycles, acked, heads, tails int
	tailKills                   int            // kills within tailWindow of a tail truncation
	inDoubt                     map[string]int // what the op in doubt at a kill did
	partialAppends, midRestores int
	rollbacks                   []string // the FSM came back at an older index (with the op in doubt)
	rollbacksInRestore          int      // ... with a restore in doubt
	tmpSnaps                    int
}

func (s *stats) report(m *model, ref *reference) string {
	return fmt.Sprintf("%d cycles, %d ops acknowledged (%d head truncations, %d tail truncations); "+
		"%d kills within %v after a tail truncation; op in doubt at a kill: %v; %d partial appends, %d kills mid-restore; "+
		"FSM came back at an older index %d times (%d with a restore in doubt), e.g. %v; "+
		"finally: log %d..%d, %d committed, FSM at %d, %d unfinished snapshot dirs left (.tmp); reference went back %d times",
		s.cycles, s.acked, s.heads, s.tails, s.tailKills, tailWindow, s.inDoubt, s.partialAppends, s.midRestores,
		len(s.rollbacks), s.rollbacksInRestore, s.rollbacks[:min(len(s.rollbacks), 5)],
		m.log.first, m.log.last, m.commit, m.applied, s.tmpSnaps, ref.rewinds)
}
