package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names TLS material on disk: the CA that signs every node and
// client, and this side's certificate and key.
type Files struct {
	CA, Cert, Key string
}

// checkEvery bounds how often the files' modification times are looked at.
const checkEvery = time.Second

// Store holds the material of Files and re-reads it when a file changes
// (its modification time or size), so new connections use a rotated
// certificate or CA without a restart. A change that does not load (a half
// written file) keeps the previous material and is tried again later.
type Store struct {
	files Files
	now   func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamps  [3]stamp
	cert    *tls.Certificate
	pool    *x509.CertPool
}

type stamp struct {
	mod  time.Time
	size int64
}

// Load reads files once; an error here is a configuration error.
func Load(files Files) (*Store, error) {
	if files.CA == "" || files.Cert == "" || files.Key == "" {
		return nil, errors.New("TLS needs a CA, a certificate and a key (all three)")
	}
	s := &Store{files: files, now: time.Now}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) stampsNow() ([3]stamp, error) {
	var out [3]stamp
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		out[i] = stamp{fi.ModTime(), fi.Size()}
	}
	return out, nil
}

// reload reads everything; s.mu is held or s is not shared yet.
func (s *Store) reload() error {
	stamps, err := s.stampsNow()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("tls: %s holds no PEM certificate", s.files.CA)
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("tls: %s, %s: %w", s.files.Cert, s.files.Key, err)
	}
	s.cert, s.pool, s.stamps, s.checked = &cert, pool, stamps, s.now()
	return nil
}

// current returns the material, re-read if a file changed.
func (s *Store) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.now().Sub(s.checked) >= checkEvery {
		s.checked = s.now()
		if stamps, err := s.stampsNow(); err == nil && stamps != s.stamps {
			_ = s.reload() // on error the old material stays
		}
	}
	return s.cert, s.pool
}

// Server is the TLS configuration of a listening port: this side's current
// certificate; client certificates verified against the current CA,
// required when requireClientCert (peers always present one), and ALPN
// protos offered in order.
func (s *Store) Server(requireClientCert bool, protos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			auth := tls.VerifyClientCertIfGiven
			if requireClientCert {
				auth = tls.RequireAndVerifyClientCert
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				ClientCAs:    pool,
				ClientAuth:   auth,
				NextProtos:   protos,
			}, nil
		},
	}
}

// Client is the TLS configuration for dialing serverName (a peer's
// advertise host, which its certificate must name): this side's current
// certificate, the server verified against the current CA.
func (s *Store) Client(serverName string, protos []string) *tls.Config {
	cert, pool := s.current()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		RootCAs:      pool,
		ServerName:   serverName,
		NextProtos:   protos,
	}
}

// ClientOnly is the TLS configuration of a client that has a CA and maybe
// a certificate (the CLI, the Go client): files.Cert and files.Key may be
// empty.
func ClientOnly(files Files) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if files.CA != "" {
		caPEM, err := os.ReadFile(files.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%s holds no PEM certificate", files.CA)
		}
	}
	if (files.Cert == "") != (files.Key == "") {
		return nil, errors.New("a client certificate needs both --cert and --key")
	}
	if files.Cert != "" {
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
