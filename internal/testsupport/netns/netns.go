// Package netns gives tests a real network between processes on one Linux
// machine. Each host is a network namespace with its own address on a
// private bridge; the test process (in the root namespace) reaches every
// host through the bridge. Faults are packet drops made by the kernel
// (iptables in the sending host's namespace), so a cut looks to the program
// exactly like a cut cable: no resets and no refused connections, only
// silence, until TCP and the program's own timeouts notice.
//
// It needs root, iproute2 and iptables; Available says why it cannot run.
// Every network is removed by Close, and the leftovers of a test process
// that died are removed the next time a network is created.
package netns

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// lockDir holds one lock file per network slot. A test process holds the
// flock of its slot for as long as the network lives, so a slot whose lock
// can be taken belongs to nobody: whatever is left of it (a process that
// died) is removed before it is used again.
const lockDir = "/run/raftkv-netns"

// Network is a bridge with a number of hosts on it.
type Network struct {
	slot   int
	bridge string
	hosts  []string // namespace names
	lock   *os.File
	mu     sync.Mutex
	drops  map[[2]int]bool
}

var (
	availOnce sync.Once
	availErr  error
)

// Available reports why networks cannot be made here (nil if they can):
// not root, or ip or iptables missing, or namespaces not permitted.
func Available() error {
	availOnce.Do(func() {
		if os.Geteuid() != 0 {
			availErr = errors.New("netns: needs root")
			return
		}
		for _, tool := range []string{"ip", "iptables"} {
			if _, err := exec.LookPath(tool); err != nil {
				availErr = fmt.Errorf("netns: %s not installed", tool)
				return
			}
		}
		probe := fmt.Sprintf("rkprobe%d", os.Getpid())
		if err := run("ip", "netns", "add", probe); err != nil {
			availErr = err
			return
		}
		defer run("ip", "netns", "del", probe)
		if err := run("ip", "netns", "exec", probe, "iptables", "-L", "OUTPUT", "-n"); err != nil {
			availErr = err
		}
	})
	return availErr
}

// New creates a network of n hosts.
func New(n int) (*Network, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	start := rand.IntN(250)
	for i := range 250 {
		slot := (start+i)%250 + 1
		lock, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(slot)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("netns: %w", err)
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			lock.Close() // in use by a live test process
			continue
		}
		nw := &Network{slot: slot, bridge: fmt.Sprintf("rkbr%d", slot), lock: lock, drops: map[[2]int]bool{}}
		nw.removeLeftovers()
		if err := nw.setup(n); err != nil {
			nw.Close()
			return nil, err
		}
		return nw, nil
	}
	return nil, errors.New("netns: no free network slot")
}

func (nw *Network) setup(n int) error {
	cmds := [][]string{
		{"ip", "link", "add", nw.bridge, "type", "bridge"},
		{"ip", "addr", "add", nw.gateway() + "/24", "dev", nw.bridge},
		{"ip", "link", "set", nw.bridge, "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("rk%dh%d", nw.slot, i)
		nw.hosts = append(nw.hosts, ns)
		veth, peer := fmt.Sprintf("rk%dv%d", nw.slot, i), fmt.Sprintf("rk%dp%d", nw.slot, i)
		cmds = append(cmds,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", veth, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", veth, "netns", ns},
			[]string{"ip", "link", "set", peer, "master", nw.bridge},
			[]string{"ip", "link", "set", peer, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", nw.IP(i) + "/24", "dev", veth},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", veth, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
		)
	}
	for _, c := range cmds {
		if err := run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// IP is host i's address.
func (nw *Network) IP(i int) string { return fmt.Sprintf("10.213.%d.%d", nw.slot, i+1) }

// gateway is the test process's address on the bridge.
func (nw *Network) gateway() string { return fmt.Sprintf("10.213.%d.254", nw.slot) }

// Len is the number of hosts.
func (nw *Network) Len() int { return len(nw.hosts) }

// Command runs name inside host i's namespace. `ip netns exec` execs the
// program, so the process's PID is the program's own: signals reach it.
func (nw *Network) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", nw.hosts[i], name}, args...)...)
}

// SetDrops replaces the faults: for every pair {from, to}, packets that host
// from sends to host to are dropped (one way; list both directions for a
// full cut). An empty list heals the network.
func (nw *Network) SetDrops(pairs ...[2]int) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	want := map[[2]int]bool{}
	for _, p := range pairs {
		want[p] = true
	}
	for p := range nw.drops {
		if !want[p] {
			if err := nw.rule("-D", p); err != nil {
				return err
			}
			delete(nw.drops, p)
		}
	}
	for p := range want {
		if !nw.drops[p] {
			if err := nw.rule("-A", p); err != nil {
				return err
			}
			nw.drops[p] = true
		}
	}
	return nil
}

func (nw *Network) rule(op string, p [2]int) error {
	return run("ip", "netns", "exec", nw.hosts[p[0]], "iptables", op, "OUTPUT", "-d", nw.IP(p[1]), "-j", "DROP")
}

// Close removes the hosts and the bridge, and frees the slot. Processes
// still running in a host keep running, without a network; stop them first.
func (nw *Network) Close() {
	nw.removeLeftovers()
	_ = nw.lock.Close() // releases the flock
}

// removeLeftovers deletes every namespace, veth and bridge of this slot,
// also those of a test process that died holding it, and stale probes.
func (nw *Network) removeLeftovers() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	prefix := fmt.Sprintf("rk%dh", nw.slot)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.HasPrefix(f[0], prefix) || (strings.HasPrefix(f[0], "rkprobe") && !alive(strings.TrimPrefix(f[0], "rkprobe"))) {
			_ = run("ip", "netns", "del", f[0])
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	veth := fmt.Sprintf("rk%dp", nw.slot)
	for _, line := range strings.Split(string(links), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, veth) || strings.HasPrefix(name, fmt.Sprintf("rk%dv", nw.slot)) {
			_ = run("ip", "link", "del", name) // one end removes the pair
		}
	}
	_ = run("ip", "link", "del", nw.bridge)
	nw.hosts = nil
}

func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	return err == nil && syscall.Kill(n, 0) == nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
