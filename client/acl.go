package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/raftkv/raftkv/api"
)

// ACL management, in Consul's shapes (package api, which the server
// answers with). Every call needs a token with acl read or write
// (Config.Token), but Bootstrap, which needs none.

// ACLPolicy is a policy: Consul's rules (HCL or JSON) under a unique name.
type ACLPolicy = api.ACLPolicy

// ACLLink names a token's policy by ID or by name.
type ACLLink = api.ACLLink

// ACLToken is a token: a SecretID that requests carry, and the AccessorID
// that names it everywhere else.
type ACLToken = api.ACLToken

func (c *Client) aclCall(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode %s: %w", path, err)
		}
	}
	// ACL writes are not keyed: a retry after an unknown outcome could
	// create a second token, so they are sent once where the fate is unclear.
	resp, err := c.do(ctx, request{method: method, path: path, body: body, repeatable: method == http.MethodGet})
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return unexpected(resp)
	}
	if out == nil {
		return nil
	}
	return decode(resp, out)
}

// ACLBootstrap creates the cluster's first management token; it works once.
func (c *Client) ACLBootstrap(ctx context.Context) (ACLToken, error) {
	var t ACLToken
	return t, c.aclCall(ctx, http.MethodPut, "/v1/acl/bootstrap", nil, &t)
}

// PolicyCreate stores a new policy and returns it with its ID.
func (c *Client) PolicyCreate(ctx context.Context, p ACLPolicy) (ACLPolicy, error) {
	var out ACLPolicy
	return out, c.aclCall(ctx, http.MethodPut, "/v1/acl/policy", p, &out)
}

// PolicyUpdate replaces policy p.ID.
func (c *Client) PolicyUpdate(ctx context.Context, p ACLPolicy) (ACLPolicy, error) {
	var out ACLPolicy
	return out, c.aclCall(ctx, http.MethodPut, "/v1/acl/policy/"+url.PathEscape(p.ID), p, &out)
}

// PolicyRead returns a policy by ID; PolicyReadByName by name.
func (c *Client) PolicyRead(ctx context.Context, id string) (ACLPolicy, error) {
	var out ACLPolicy
	return out, c.aclCall(ctx, http.MethodGet, "/v1/acl/policy/"+url.PathEscape(id), nil, &out)
}

func (c *Client) PolicyReadByName(ctx context.Context, name string) (ACLPolicy, error) {
	var out ACLPolicy
	return out, c.aclCall(ctx, http.MethodGet, "/v1/acl/policy/name/"+url.PathEscape(name), nil, &out)
}

// PolicyList returns every policy (without rules).
func (c *Client) PolicyList(ctx context.Context) ([]ACLPolicy, error) {
	var out []ACLPolicy
	return out, c.aclCall(ctx, http.MethodGet, "/v1/acl/policies", nil, &out)
}

// PolicyDelete removes a policy; tokens that had it lose what it granted.
func (c *Client) PolicyDelete(ctx context.Context, id string) error {
	return c.aclCall(ctx, http.MethodDelete, "/v1/acl/policy/"+url.PathEscape(id), nil, nil)
}

// TokenCreate stores a new token (IDs chosen by the cluster unless set).
func (c *Client) TokenCreate(ctx context.Context, t ACLToken) (ACLToken, error) {
	var out ACLToken
	return out, c.aclCall(ctx, http.MethodPut, "/v1/acl/token", t, &out)
}

// TokenUpdate replaces token t.AccessorID's description and policies.
func (c *Client) TokenUpdate(ctx context.Context, t ACLToken) (ACLToken, error) {
	var out ACLToken
	return out, c.aclCall(ctx, http.MethodPut, "/v1/acl/token/"+url.PathEscape(t.AccessorID), t, &out)
}

// TokenClone creates a token with accessor's policies (and description,
// unless one is given).
func (c *Client) TokenClone(ctx context.Context, accessor, description string) (ACLToken, error) {
	var out ACLToken
	return out, c.aclCall(ctx, http.MethodPut, "/v1/acl/token/"+url.PathEscape(accessor)+"/clone", ACLToken{Description: description}, &out)
}

// TokenRead returns a token by AccessorID; TokenSelf the client's own.
func (c *Client) TokenRead(ctx context.Context, accessor string) (ACLToken, error) {
	var out ACLToken
	return out, c.aclCall(ctx, http.MethodGet, "/v1/acl/token/"+url.PathEscape(accessor), nil, &out)
}

func (c *Client) TokenSelf(ctx context.Context) (ACLToken, error) {
	var out ACLToken
	return out, c.aclCall(ctx, http.MethodGet, "/v1/acl/token/self", nil, &out)
}

// TokenList returns every token (secrets hidden without acl write).
func (c *Client) TokenList(ctx context.Context) ([]ACLToken, error) {
	var out []ACLToken
	return out, c.aclCall(ctx, http.MethodGet, "/v1/acl/tokens", nil, &out)
}

// TokenDelete removes a token: requests carrying it are refused.
func (c *Client) TokenDelete(ctx context.Context, accessor string) error {
	return c.aclCall(ctx, http.MethodDelete, "/v1/acl/token/"+url.PathEscape(accessor), nil, nil)
}
