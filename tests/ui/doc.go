// Package ui tests the web UI in a real browser: headless Chromium
// (Debian's, installed by scripts/test.sh) driven through the DevTools
// protocol (chromedp) against raftkvd processes. Set
// RAFTKV_UI_SCREENSHOTS=<dir> to save the main views as PNGs (docs/ holds
// the ones made that way).
package ui
