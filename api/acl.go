package api

import "time"

// ACLPolicy is a policy: Consul's rules (HCL or JSON) under a unique name.
// The server answers a read, create or update with every field; in a
// request the cluster sets ID (on a create), CreateIndex and ModifyIndex.
type ACLPolicy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	CreateIndex uint64
	ModifyIndex uint64
}

// ACLPolicyListEntry is a policy in a listing (GET /v1/acl/policies):
// Consul leaves the rules out. Datacenters is always null (one
// datacenter).
type ACLPolicyListEntry struct {
	ID          string
	Name        string
	Description string
	Datacenters []string
	CreateIndex uint64
	ModifyIndex uint64
}

// ACLLink names a token's policy. A request may name it by ID or by name;
// an answer names it by both.
type ACLLink struct {
	ID   string
	Name string
}

// ACLToken is a token: a SecretID that requests carry, and the AccessorID
// that names it everywhere else. In a request the cluster sets
// CreateTime, CreateIndex and ModifyIndex (and the IDs, if empty).
type ACLToken struct {
	AccessorID  string
	SecretID    string
	Description string
	Policies    []ACLLink
	Local       bool
	CreateTime  time.Time
	CreateIndex uint64
	ModifyIndex uint64
}
