package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proccluster.Cleanup()
	os.Exit(code)
}

func startCluster(t *testing.T, opts proccluster.Options) (*proccluster.Cluster, *proccluster.Proc) {
	opts.Root = "../.."
	c := proccluster.Start(t, 3, opts)
	c.WaitVoters(60 * time.Second)
	leader := c.Leader()
	for i, p := range c.Procs {
		if i != leader {
			return c, p
		}
	}
	t.Fatal("no follower")
	return nil, nil
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// steadyTraffic writes through node 0 and reads on addr until stopped (or
// the test ends).
func steadyTraffic(t *testing.T, c *proccluster.Cluster, addr string) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := c.HTTPClient(10 * time.Second) // with the management token
		send := func(method, addr, path string) {
			req, _ := http.NewRequest(method, c.URL(addr, path), strings.NewReader("x"))
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			send("PUT", c.Procs[0].Addr, fmt.Sprintf("/v1/kv/load/%d", i%50))
			send("GET", addr, "/v1/kv/app/config")
			send("GET", addr, "/v1/kv/app/name")
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	t.Cleanup(stop)
	return stop
}

// sparkPoints: the write sparkline has at least n points.
func sparkPoints(n int) string {
	return fmt.Sprintf(`(e => !!e && e.getAttribute("points").trim().split(/\s+/).length >= %d)(document.querySelector("#spark-writes polyline"))`, n)
}

func keyItem(key string) string { return fmt.Sprintf(`#kv-list li[data-key=%s]`, js(key)) }

func exists(sel string) string { return fmt.Sprintf(`!!document.querySelector(%s)`, js(sel)) }

func shown(sel string) string {
	return fmt.Sprintf(`(e => !!e && !e.hidden && e.getClientRects().length > 0)(document.querySelector(%s))`, js(sel))
}

func textIs(sel, want string) string {
	return fmt.Sprintf(`(e => !!e && e.textContent.trim() === %s)(document.querySelector(%s))`, js(want), js(sel))
}

func textHas(sel, want string) string {
	return fmt.Sprintf(`(e => !!e && e.textContent.includes(%s))(document.querySelector(%s))`, js(want), js(sel))
}

// The UI against a 3-node cluster with ACLs (default deny), served by a
// follower: every view, every action, live updates, a conflicting edit and
// a denied one, and not one console error.
func TestUI(t *testing.T) {
	c, node := startCluster(t, proccluster.Options{ACLs: true})
	root := &api{t: t, c: c, addr: node.Addr, token: proccluster.ManagementToken, hc: c.HTTPClient(10 * time.Second)}

	root.must("PUT", "/v1/kv/app/config", `{"replicas":3,"features":{"ui":true}}`)
	root.must("PUT", "/v1/kv/app/name", "checkout")
	root.must("PUT", "/v1/kv/app/blob", "\x00\x01\x02binary\xff")
	root.must("PUT", "/v1/kv/app/deep/er/key", "x")
	root.must("PUT", "/v1/kv/other/one", "1")
	root.must("PUT", "/v1/kv/other/two", "2")
	root.must("PUT", "/v1/kv/otherwise", "not in other/")

	b := newBrowser(t, c.URL(node.Addr, ""))

	// / sends a browser to the UI, which loads with no token...
	b.run("open /", chromedpNavigate(b.base+"/"))
	b.waitUntil("the UI at /ui/", `location.pathname === "/ui/" && !!document.querySelector("#view-cluster")`)
	// ...and shows what a missing token gets: a 403, as such.
	b.waitUntil("the 403 without a token", textHas("#error", "403"))
	b.useToken(proccluster.ManagementToken)

	t.Run("cluster", func(t *testing.T) {
		b.t = t
		b.go_("#/cluster")
		b.waitUntil("three members", `document.querySelectorAll("#members tbody tr[data-member]").length === 3`)
		b.waitUntil("one leader", `document.querySelectorAll('#members tbody tr[data-leader="true"]').length === 1`)
		b.waitUntil("the error banner cleared", `!document.querySelector("#error") || document.querySelector("#error").hidden || document.querySelector("#error").textContent.trim() === ""`)
		for _, p := range c.Procs {
			b.waitUntil(p.ID+"'s row", exists(fmt.Sprintf(`#members tr[data-member=%s]`, js(p.ID))))
		}
		// The rates are measured: traffic while the page watches shows up
		// (kept going until it does: the page samples every 2 s).
		stop := steadyTraffic(t, c, node.Addr)
		b.waitUntil("a write rate", `/[1-9]/.test(document.querySelector("#rate-writes").textContent)`)
		b.waitUntil("a read rate", `/[1-9]/.test(document.querySelector("#rate-reads").textContent)`)
		b.waitUntil("the write sparkline", sparkPoints(2))
		if screenshots() { // a picture worth looking at
			b.waitUntil("a long sparkline", sparkPoints(8))
		}
		stop()
		b.screenshot("ui-cluster")

		before := c.Leader()
		b.click("#transfer-leader")
		b.confirm()
		testsupport.WaitFor(t, 20*time.Second, "a new leader", func() error {
			if l := c.Leader(); l < 0 || l == before {
				return fmt.Errorf("leader still %d", l)
			}
			return nil
		})
		after := c.Procs[c.Leader()].ID
		b.waitUntil("the new leader in the table", fmt.Sprintf(`!!document.querySelector('#members tr[data-member=%s][data-leader="true"]')`, js(after)))
	})

	t.Run("browse", func(t *testing.T) {
		b.t = t
		b.click("#nav-kv")
		b.waitUntil("the root folders", exists(keyItem("app/"))+" && "+exists(keyItem("other/")))
		b.click(keyItem("app/") + " a")
		b.waitUntil("app/'s keys", exists(keyItem("app/config"))+" && "+exists(keyItem("app/deep/")))
		if exists := b.pageText(); strings.Contains(exists, "app/deep/er/key") {
			t.Fatalf("the listing is not one folder deep: %s", exists)
		}
		b.waitUntil("breadcrumbs", textHas("#breadcrumbs", "app"))
		b.screenshot("ui-keys")

		b.click(keyItem("app/config") + " a")
		b.waitUntil("JSON shown as JSON", textIs("#kv-format", "json"))
		b.waitUntil("pretty-printed", textHas("#kv-value", "\n  \"replicas\": 3"))
		want := root.entry("app/config").ModifyIndex
		b.waitUntil("its ModifyIndex", textIs(`#kv-meta dd[data-field="ModifyIndex"]`, fmt.Sprint(want)))
		b.screenshot("ui-key")

		b.go_("#/kv/app/blob")
		b.waitUntil("binary shown as hex", textIs("#kv-format", "hex"))
		b.waitUntil("the hex dump", textHas("#kv-value", "00 01 02"))
		b.go_("#/kv/app/name")
		b.waitUntil("text shown as text", textIs("#kv-format", "text")+" && "+textIs("#kv-value", "checkout"))

		// A key whose path a URL cannot carry (browsers resolve "..") is
		// listed but not opened: a request for it would reach another key.
		root.must("PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"x/../y","Value":"eA=="}}]`)
		b.go_("#/kv/x/")
		b.waitUntil("the unaddressable folder listed, without a link", exists(keyItem("x/../"))+" && !"+exists(keyItem("x/../")+" a"))

		// Search by prefix.
		b.go_("#/kv/")
		b.typeInto("#kv-search", "oth")
		b.click("#kv-search-go")
		b.waitUntil("the search's matches", exists(keyItem("other/"))+" && !"+exists(keyItem("app/")))
	})

	t.Run("edit", func(t *testing.T) {
		b.t = t
		b.go_("#/kv/app/name")
		b.waitUntil("the key", textIs("#kv-value", "checkout"))
		b.typeInto("#kv-editor", "checkout-v2")
		b.click("#kv-save")
		b.waitUntil("saved", textHas("#kv-status", "saved"))
		if e := root.entry("app/name"); string(e.Value) != "checkout-v2" {
			t.Fatalf("after save: %q", e.Value)
		}
		b.waitUntil("the new value shown", textIs("#kv-value", "checkout-v2"))

		// Someone else writes (curl) while the page shows the key: the
		// change appears without a reload.
		curl(t, c, c.Procs[0].Addr, proccluster.ManagementToken, "app/name", "from-curl")
		b.waitUntil("curl's write, live", textIs("#kv-value", "from-curl"))

		// A conflicting edit: the user edits, someone else writes, the
		// user saves. Both versions are shown; nothing is overwritten.
		b.typeInto("#kv-editor", "mine")
		curl(t, c, c.Procs[2].Addr, proccluster.ManagementToken, "app/name", "theirs")
		b.click("#kv-save")
		b.waitUntil("the conflict", shown("#kv-conflict"))
		b.waitUntil("both versions", textIs("#kv-conflict-mine", "mine")+" && "+textHas("#kv-conflict-theirs", "theirs"))
		if e := root.entry("app/name"); string(e.Value) != "theirs" {
			t.Fatalf("a conflicting save overwrote: %q", e.Value)
		}
		b.screenshot("ui-conflict")
		b.click("#kv-conflict-overwrite")
		testsupport.WaitFor(t, 10*time.Second, "the overwrite", func() error {
			if e := root.entry("app/name"); string(e.Value) != "mine" {
				return fmt.Errorf("value %q", e.Value)
			}
			return nil
		})

		// Create (never over an existing key), then delete.
		b.go_("#/kv/app/")
		b.click("#kv-new")
		b.typeInto("#kv-create-key", "app/created")
		b.typeInto("#kv-create-value", "fresh")
		b.click("#kv-create-submit")
		// The page opens the key it made (wait for that, or it could land
		// after the navigation below).
		b.waitUntil("the created key shown", textIs("#kv-key-name", "app/created")+" && "+textIs("#kv-value", "fresh"))
		testsupport.WaitFor(t, 10*time.Second, "the created key", func() error {
			if e := root.entry("app/created"); e == nil || string(e.Value) != "fresh" {
				return fmt.Errorf("entry %+v", e)
			}
			return nil
		})
		b.go_("#/kv/app/")
		b.waitUntil("the created key listed", exists(keyItem("app/created")))
		b.click("#kv-new")
		b.typeInto("#kv-create-key", "app/created")
		b.typeInto("#kv-create-value", "clobber")
		b.click("#kv-create-submit")
		b.waitUntil("create refused over an existing key", textHas("#error", "already exists"))
		if e := root.entry("app/created"); string(e.Value) != "fresh" {
			t.Fatalf("create overwrote: %q", e.Value)
		}
		b.go_("#/kv/app/created")
		b.waitUntil("the key", textIs("#kv-value", "fresh"))
		b.click("#kv-delete")
		b.confirm()
		b.waitUntil("the parent folder after the delete", exists("#kv-list")+" && location.hash === \"#/kv/app/\"")
		testsupport.WaitFor(t, 10*time.Second, "the delete", func() error {
			if e := root.entry("app/created"); e != nil {
				return fmt.Errorf("still there: %+v", e)
			}
			return nil
		})

		// A key written by curl into the folder on show appears live.
		b.go_("#/kv/app/")
		b.waitUntil("the folder", exists(keyItem("app/config")))
		curl(t, c, c.Procs[1].Addr, proccluster.ManagementToken, "app/live", "1")
		b.waitUntil("curl's new key, live", exists(keyItem("app/live")))

		// Delete a folder, after confirmation.
		b.go_("#/kv/other/")
		b.waitUntil("other/", exists(keyItem("other/one")))
		b.click("#kv-delete-folder")
		b.confirm()
		b.waitUntil("the parent folder after the delete", `location.hash === "#/kv/"`)
		testsupport.WaitFor(t, 10*time.Second, "the folder delete", func() error {
			if root.entry("other/one") != nil || root.entry("other/two") != nil {
				return fmt.Errorf("other/ still has keys")
			}
			return nil
		})
		if root.entry("app/config") == nil || root.entry("otherwise") == nil {
			t.Fatal("deleting other/ deleted keys outside it")
		}
		// (A URL cannot name x/../y; a transaction can.)
		if code, out := root.do("PUT", "/v1/txn", `[{"KV":{"Verb":"get","Key":"x/../y"}}]`); code != http.StatusOK {
			t.Fatalf("x/../y after deleting other/: %d %s", code, out)
		}
	})

	t.Run("sessions", func(t *testing.T) {
		b.t = t
		var created struct{ ID string }
		if err := json.Unmarshal([]byte(root.must("PUT", "/v1/session/create", `{"Name":"web-lock","TTL":"30s","Behavior":"release"}`)), &created); err != nil {
			t.Fatal(err)
		}
		if out := root.must("PUT", "/v1/kv/app/leader?acquire="+created.ID, "me"); strings.TrimSpace(out) != "true" {
			t.Fatalf("acquire: %s", out)
		}
		row := fmt.Sprintf(`#sessions tr[data-session=%s]`, js(created.ID))
		b.click("#nav-sessions")
		b.waitUntil("the session", exists(row))
		b.waitUntil("what it holds", textHas(row+" .held", "app/leader"))
		b.waitUntil("its TTL and behaviour", textHas(row, "30s")+" && "+textHas(row, "release"))
		b.screenshot("ui-sessions")
		// The lock shows on the key too.
		b.go_("#/kv/app/leader")
		b.waitUntil("the holding session", textHas(`#kv-meta dd[data-field="Session"]`, created.ID))
		b.waitUntil("LockIndex", textIs(`#kv-meta dd[data-field="LockIndex"]`, "1"))

		b.go_("#/sessions")
		b.waitUntil("the session", exists(row))
		b.click(row + " button.destroy")
		b.confirm()
		b.waitUntil("the session gone", "!"+exists(row))
		if code, out := root.do("GET", "/v1/session/info/"+created.ID, ""); code != http.StatusOK || strings.TrimSpace(out) != "[]" {
			t.Fatalf("after destroy: %d %s", code, out)
		}
		if e := root.entry("app/leader"); e.Session != "" {
			t.Fatalf("lock still held after destroy: %+v", e)
		}
	})

	t.Run("denied", func(t *testing.T) {
		b.t = t
		pol := root.must("PUT", "/v1/acl/policy", `{"Name":"app-read","Rules":"key_prefix \"app/\" { policy = \"read\" }"}`)
		var p struct{ ID string }
		if err := json.Unmarshal([]byte(pol), &p); err != nil {
			t.Fatal(err)
		}
		tok := root.must("PUT", "/v1/acl/token", fmt.Sprintf(`{"Description":"ui reader","Policies":[{"ID":%q}]}`, p.ID))
		var token struct{ SecretID string }
		if err := json.Unmarshal([]byte(tok), &token); err != nil {
			t.Fatal(err)
		}
		b.useToken(token.SecretID)
		b.go_("#/kv/app/name")
		b.waitUntil("the key, readable", textIs("#kv-value", "mine"))
		b.typeInto("#kv-editor", "not allowed")
		b.click("#kv-save")
		b.waitUntil("the 403", textHas("#error", "403")+" && "+textHas("#error", "Permission denied")+" && "+textHas("#error", "key:write"))
		b.screenshot("ui-denied")
		if e := root.entry("app/name"); string(e.Value) != "mine" {
			t.Fatalf("a denied save wrote: %q", e.Value)
		}
		// The cluster view needs operator:read: shown as a 403 too.
		b.go_("#/cluster")
		b.waitUntil("the cluster view's 403", textHas("#error", "403")+" && "+textHas("#error", "operator:read"))
	})

	b.checkConsole()
}

// Over TLS (mutual between the nodes; the browser brings no certificate),
// the same page works: it only ever asks its own origin.
func TestUIOverTLS(t *testing.T) {
	c, node := startCluster(t, proccluster.Options{TLS: true})
	b := newBrowser(t, c.URL(node.Addr, ""))
	b.run("open /ui/", chromedpNavigate(b.base+"/ui/"))
	if !strings.HasPrefix(b.base, "https://") {
		t.Fatalf("not TLS: %s", b.base)
	}
	b.waitUntil("three members", `document.querySelectorAll("#members tbody tr[data-member]").length === 3`)
	curl(t, c, node.Addr, "", "tls/key", "over-tls")
	b.go_("#/kv/tls/key")
	b.waitUntil("a key over TLS", textIs("#kv-value", "over-tls"))
	b.checkConsole()
}
