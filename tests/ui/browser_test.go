package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// browser is one headless Chromium tab on a node's UI. It records every
// console error and uncaught exception the page produces: a test fails on
// any (see checkConsole).
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string // the node's URL, http(s)://host:port

	mu       sync.Mutex
	problems []string
}

// chromium finds the browser scripts/test.sh installs.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: scripts/test.sh installs Debian's chromium (apt-get install chromium)")
	return ""
}

func newBrowser(t *testing.T, base string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.WindowSize(1280, 800),
		// The TLS test's CA is made for the test, not known to the browser.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, base: base}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
	})
	// The console is read from the first moment: a page error at load
	// counts too. Network errors are the page's business when they are API
	// answers (a 403 it shows, a 404 for a deleted key); a missing file of
	// the UI itself is a problem.
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() && m.Type != "assert" {
				continue
			}
			if m.Source == "network" && strings.Contains(m.URL, "/v1/") {
				continue
			}
			if strings.Contains(m.String(), "net::ERR_NETWORK_CHANGED") {
				// The machine's network changed under the browser (the
				// robustness suite adds and removes network namespaces in
				// the same run): not the page's doing.
				continue
			}
			b.mu.Lock()
			b.problems = append(b.problems, m.String()+" ("+m.URL+")")
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, actions...)
	for try := 0; try < 3 && err != nil && strings.Contains(err.Error(), "net::ERR_NETWORK_CHANGED"); try++ {
		// The machine's network changed under the browser (the robustness
		// suite adds and removes network interfaces in the same run):
		// Chromium drops what was loading; load it again.
		err = chromedp.Do(ctx, actions...)
	}
	if err != nil {
		b.t.Fatalf("%s: %v\npage text: %s", what, err, b.pageText())
	}
}

// waitUntil polls a JavaScript condition in the page until it holds.
func (b *browser) waitUntil(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v\npage text: %s", what, cond, err, b.pageText())
	}
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// go navigates by the location hash, as the UI's own links do.
func (b *browser) go_(hash string) {
	b.t.Helper()
	b.run("go to "+hash, chromedp.Evaluate[chromedp.Void]("location.hash = "+js(hash)))
}

// typeInto replaces an input's text the way a user would (key events, so
// the page sees input events).
func (b *browser) typeInto(sel, text string) {
	b.t.Helper()
	clear := fmt.Sprintf(`(e => { e.value = ""; })(document.querySelector(%s))`, js(sel))
	b.run("type into "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Evaluate[chromedp.Void](clear), chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.run("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// confirm answers the page's confirmation dialog with OK.
func (b *browser) confirm() {
	b.t.Helper()
	b.waitUntil("the confirmation dialog", `document.querySelector('#confirm').open`)
	b.click("#confirm-ok")
}

// useToken enters an ACL token in the page's token field.
func (b *browser) useToken(token string) {
	b.t.Helper()
	b.typeInto("#token", token)
	b.click("#token-save")
}

// screenshots reports whether the run saves screenshots (for docs/).
func screenshots() bool { return os.Getenv("RAFTKV_UI_SCREENSHOTS") != "" }

func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("RAFTKV_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// checkConsole fails the test on any console error or exception so far.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Fatalf("the page logged errors:\n%s", strings.Join(b.problems, "\n"))
	}
}

// api is the test's own HTTP client for the cluster, with a token.
type api struct {
	t     *testing.T
	c     *proccluster.Cluster
	addr  string
	token string
	hc    *http.Client
}

func (a *api) do(method, path, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.c.URL(a.addr, path), strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (a *api) must(method, path, body string) string {
	a.t.Helper()
	code, out := a.do(method, path, body)
	if code != http.StatusOK {
		a.t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	return out
}

// entry is a key's stored entry, or nil if absent.
func (a *api) entry(key string) *struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
	Session     string
} {
	a.t.Helper()
	code, out := a.do("GET", "/v1/kv/"+key, "")
	if code == http.StatusNotFound {
		return nil
	}
	var es []struct {
		Key         string
		Value       []byte
		ModifyIndex uint64
		Session     string
	}
	if code != http.StatusOK || json.Unmarshal([]byte(out), &es) != nil || len(es) != 1 {
		a.t.Fatalf("GET %s: %d %s", key, code, out)
	}
	return &es[0]
}

// curl writes a key the way an operator would, from outside the browser.
func curl(t *testing.T, c *proccluster.Cluster, addr, token, key, value string) {
	t.Helper()
	args := []string{"-sS", "-f", "-X", "PUT", "-H", "X-Consul-Token: " + token, "--data-binary", value, c.URL(addr, "/v1/kv/"+key)}
	if strings.HasPrefix(c.URL(addr, ""), "https") {
		args = append([]string{"-k"}, args...)
	}
	if out, err := exec.Command("curl", args...).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "true" {
		t.Fatalf("curl PUT %s: %v %s", key, err, out)
	}
}

func chromedpNavigate(url string) chromedp.Action[chromedp.Void] { return chromedp.Navigate(url) }
