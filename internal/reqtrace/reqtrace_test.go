package reqtrace

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRefusedConnectionNeverArrived(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, tr := With(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/k", strings.NewReader("v"))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request to a closed port succeeded")
	}
	if tr.MayHaveArrived() {
		t.Fatal("a refused request may have arrived")
	}
}

// A request whose answer never comes (cancelled while the server holds it)
// may have been acted on.
func TestCancelledAfterDeliveryMayHaveArrived(t *testing.T) {
	got := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(got)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	ctx, tr := With(ctx)
	go func() { <-got; cancel() }()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/k", strings.NewReader("v"))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("cancelled request succeeded")
	}
	if !tr.MayHaveArrived() {
		t.Fatal("a delivered request counted as never sent")
	}
}
