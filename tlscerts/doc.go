// Package tlscerts makes the certificates a raftkv cluster runs on over
// TLS: a CA, and node or client certificates signed by it, the same as
// `raftkv tls ca create` and `raftkv tls cert create` make (see
// docs/SECURITY.md, "Making certificates"). A program that embeds raftkv
// writes them to files and names the files in raftstore.Config.TLS (the
// example's -tls mode does); tests do the same.
//
// A node's certificate serves both ends of mutual TLS (server and client
// authentication) and must name every host peers dial it at; a client's
// certificate is for the client end only. For production, certificates
// from any PKI that follow these rules do as well.
package tlscerts
