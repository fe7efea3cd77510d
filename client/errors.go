package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrPermanent marks an error that retrying cannot change: the endpoint
// and this client do not agree on TLS (a plaintext request to a TLS-only
// node, a CA that did not sign the node, a certificate for another name, a
// client certificate missing or refused), or the endpoint is not a raftkv
// node. A call that meets one gives up at once instead of retrying until
// its Timeout. Match it with errors.Is; *SetupError and
// *UnexpectedAnswerError say more.
var ErrPermanent = errors.New("retrying will not help")

// Problem is what a SetupError found wrong.
type Problem int

const (
	// SpeaksTLS: a plaintext (http://) request to a node that speaks only
	// TLS.
	SpeaksTLS Problem = iota + 1
	// NoTLS: a TLS (https://) request to a node that speaks plaintext.
	NoTLS
	// UnknownCA: the node's certificate is not signed by the CA this
	// client trusts (Config.TLS; the CLI's --cacert).
	UnknownCA
	// WrongName: the node's certificate does not name the host dialled.
	WrongName
	// BadServerCert: the node's certificate is otherwise unusable (expired,
	// not yet valid, not for a server).
	BadServerCert
	// ClientCertNeeded: the node demands a client certificate (it runs
	// with -tls-verify-incoming) and this client has none.
	ClientCertNeeded
	// ClientCertRefused: the node refused this client's certificate (not
	// signed by the nodes' CA, expired).
	ClientCertRefused
)

// SetupError is a TLS disagreement between this client and an endpoint:
// permanent (errors.Is(err, ErrPermanent)), with what to do about it. Its
// words name the raftkv CLI's flags; in Go, --cacert, --cert and --key are
// the arguments of TLSConfig, given as Config.TLS.
type SetupError struct {
	Endpoint string // host:port
	Problem  Problem
	// Detail: for WrongName the names the certificate holds, for the
	// others the TLS library's words.
	Detail string
	Err    error
}

func (e *SetupError) Error() string {
	switch e.Problem {
	case SpeaksTLS:
		return e.Endpoint + " speaks TLS: use https:// and pass --cacert (the CA that signs the nodes)"
	case NoTLS:
		return e.Endpoint + " does not speak TLS: use http:// and leave out --cacert, --cert and --key"
	case UnknownCA:
		return e.Endpoint + ": the node's certificate is not signed by the CA given (--cacert)"
	case WrongName:
		host, _, _ := net.SplitHostPort(e.Endpoint)
		return fmt.Sprintf("%s: the node's certificate does not name %s (it names %s): use an address it names, or give the node a certificate for it (raftkv tls cert create --host %s)", e.Endpoint, host, e.Detail, host)
	case BadServerCert:
		return e.Endpoint + ": the node's certificate is not usable: " + e.Detail
	case ClientCertNeeded:
		return e.Endpoint + ": the node does not trust this client: pass --cert and --key (a client certificate signed by the nodes' CA)"
	case ClientCertRefused:
		return e.Endpoint + ": the node refused this client's certificate (--cert): " + e.Detail
	}
	return e.Endpoint + ": " + e.Detail
}

func (e *SetupError) Unwrap() []error { return []error{ErrPermanent, e.Err} }

// UnexpectedAnswerError is an answer raftkv does not give: a 404 outside
// a key read, or a body that is not what the endpoint answers (another
// server, or a proxy, on that address). Permanent.
type UnexpectedAnswerError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *UnexpectedAnswerError) Error() string {
	body := e.Body
	if len(body) > 200 {
		body = body[:200] + "…"
	}
	if body != "" {
		body = " " + body
	}
	return fmt.Sprintf("unexpected answer from %s %s: %d%s (is this a raftkv node?)", e.Method, e.URL, e.Status, body)
}

func (e *UnexpectedAnswerError) Is(target error) bool { return target == ErrPermanent }

// unexpected is the error for an answer r that raftkv would not give.
func unexpected(r *response) error {
	body := strings.Join(strings.Fields(string(r.body)), " ")
	return &UnexpectedAnswerError{Method: r.method, URL: r.url, Status: r.status, Body: body}
}

// requestError is what went wrong with one request to one endpoint: the
// request (method and URL) and the reason, each said once.
type requestError struct {
	method, url string
	err         error
}

func (e *requestError) Error() string { return e.method + " " + e.url + ": " + describe(e.err) }
func (e *requestError) Unwrap() error { return e.err }

// newRequestError names the request to base+path. The URL shown never
// carries a token (the client sends it in a header; a ?token= given in a
// path is blanked) and the transport's own *url.Error, which repeats the
// URL, is unwrapped.
func newRequestError(method, base, path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	return &requestError{method: method, url: showURL(base + path), err: err}
}

// showURL is u without any token in its query.
func showURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.RawQuery == "" {
		return u
	}
	q := p.Query()
	if !q.Has("token") {
		return u
	}
	q.Set("token", "redacted")
	p.RawQuery = q.Encode()
	return p.String()
}

// describe says in a few words why a request failed: the transport's
// reason without the URL and socket addresses it repeats, or the answer's.
func describe(err error) string {
	var ce *errConn
	if errors.As(err, &ce) {
		err = ce.err
	}
	var re *requestError
	if errors.As(err, &re) {
		err = re.err
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before an answer"
	case errors.As(err, &dns) && dns.IsNotFound:
		return "no such host " + dns.Name
	}
	return dedupe(err.Error())
}

// dedupe drops a prefix that the text after it repeats:
// `unknown peer: unknown peer: "n9"` is `unknown peer: "n9"`.
func dedupe(s string) string {
	parts := strings.Split(s, ": ")
	out := parts[:0]
	for i, p := range parts {
		if i+1 < len(parts) && strings.EqualFold(parts[i+1], p) {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}

// permanent returns the SetupError that err, from a request to the
// endpoint base, stands for, or nil if retrying could help. A plaintext
// request that a node answered by closing the connection is checked with
// one TLS handshake (remembered for the client's life): raftkv's TLS port
// closes plaintext connections without a word.
func (c *Client) permanent(ctx context.Context, base string, err error) error {
	var ce *errConn
	if !errors.As(err, &ce) {
		return nil // an answer: statusError said what it means
	}
	inner := ce.err
	u, perr := url.Parse(base)
	if perr != nil {
		return nil
	}
	host := u.Host
	setup := func(p Problem, detail string) error {
		return &SetupError{Endpoint: host, Problem: p, Detail: detail, Err: inner}
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case errors.As(inner, &unknownCA):
		return setup(UnknownCA, unknownCA.Error())
	case errors.As(inner, &hostname):
		return setup(WrongName, certNames(hostname.Certificate))
	case errors.As(inner, &invalid):
		return setup(BadServerCert, invalid.Error())
	case errors.As(inner, &verify):
		return setup(BadServerCert, verify.Err.Error())
	case errors.Is(inner, http.ErrSchemeMismatch), errors.As(inner, &record):
		return setup(NoTLS, "")
	case errors.As(inner, &op) && op.Op == "remote error":
		// A TLS alert from the node: which one says what it refused.
		alert := strings.TrimPrefix(op.Err.Error(), "tls: ")
		switch alert {
		case "certificate required", "handshake failure", "bad certificate", "unknown certificate authority", "certificate expired", "unsupported certificate", "certificate revoked", "access denied":
			if !c.hasClientCert() {
				return setup(ClientCertNeeded, alert)
			}
			why := alert
			switch alert {
			case "certificate required":
				// The node names the CA it wants; a certificate from
				// another one is not even offered.
				why = "it is not signed by the nodes' CA, so it was not offered (" + alert + ")"
			case "unknown certificate authority", "bad certificate":
				why = "it is not signed by the nodes' CA (" + alert + ")"
			case "certificate expired":
				why = "it has expired"
			}
			return setup(ClientCertRefused, why)
		}
	case u.Scheme == "http" && (errors.Is(inner, io.EOF) || errors.Is(inner, io.ErrUnexpectedEOF) || errors.Is(inner, syscall.ECONNRESET)):
		if c.speaksTLS(ctx, host) {
			return setup(SpeaksTLS, "")
		}
	}
	return nil
}

// certNames lists the names a certificate holds.
func certNames(cert *x509.Certificate) string {
	if cert == nil {
		return "other names"
	}
	var names []string
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		if cert.Subject.CommonName != "" {
			return "only the common name " + cert.Subject.CommonName
		}
		return "no host at all"
	}
	return strings.Join(names, ", ")
}

// hasClientCert says whether this client presents a certificate.
func (c *Client) hasClientCert() bool {
	return c.tls != nil && (len(c.tls.Certificates) > 0 || c.tls.GetClientCertificate != nil)
}

// speaksTLS tells, with one TLS handshake, whether host answers TLS. Only
// the handshake is made (whatever the certificate) and nothing is sent
// over it; the answer is kept for the client's life.
func (c *Client) speaksTLS(ctx context.Context, host string) bool {
	c.mu.Lock()
	known, ok := c.probed[host]
	c.mu.Unlock()
	if ok {
		return known
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	d := &tls.Dialer{
		NetDialer: &net.Dialer{},
		// Only whether a TLS server answers matters, not who it is: no
		// request follows.
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, //nolint:gosec // a probe, no data is sent
	}
	conn, err := d.DialContext(ctx, "tcp", host)
	var op *net.OpError
	yes := err == nil || errors.As(err, &op) && op.Op == "remote error" // a TLS alert is TLS too
	if conn != nil {
		conn.Close()
	}
	if err != nil && ctx.Err() != nil {
		return false // unanswered: try again next time
	}
	c.mu.Lock()
	if c.probed == nil {
		c.probed = map[string]bool{}
	}
	c.probed[host] = yes
	c.mu.Unlock()
	return yes
}
