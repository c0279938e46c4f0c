package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/rugwatch/rugwatch/visible"
)

// Resources are kept apart by their URIs, which the gateway never
// renames, under either names policy: a URI is the server's address for
// its data, and the client meets it outside any list too (in a tool's
// result, a resource link, an update notification), so a renamed URI
// would be one the client cannot use. Instead a request naming a URI
// (resources/read, subscribe, unsubscribe) goes to the one server that
// listed it; a URI no server listed goes to the one server whose resource
// template covers it (RFC 6570 level 1). A URI two servers list, or the
// templates of two servers cover, is served by neither, under names:
// prefixed as well; a URI one server lists goes to it even when another
// server's template covers it too, so no server's catch-all template can
// take (or block) another's listed resources. A gateway of one server
// sends it every URI, as its own endpoint does: a server may serve a
// resource it never lists (server-everything's watched resource, which
// the conformance suite subscribes to), and with one server there is no
// one else's it could be.

// maxSubscribed bounds the subscriptions a gateway session remembers the
// server of; past it an unsubscribe is routed as a read is.
const maxSubscribed = 1024

// maxTemplateLen bounds a resource template the gateway compiles.
const maxTemplateLen = 4096

// resource routes resources/read, resources/subscribe and
// resources/unsubscribe by params.uri; an unsubscribe goes where its
// subscribe went, even if the URI's listing moved since.
func (g *gateway) resource(ctx context.Context, req *jsonrpc.Request) *jsonrpc.Response {
	var p map[string]json.RawMessage
	var uri string
	if json.Unmarshal(req.Params, &p) != nil || p == nil || json.Unmarshal(p["uri"], &uri) != nil || uri == "" {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, req.Method+": params.uri must be a non-empty string")
	}
	var in *inner
	if req.Method == "resources/unsubscribe" {
		g.mu.Lock()
		in = g.subscribed[uri]
		g.mu.Unlock()
	}
	if in == nil {
		var msg string
		if in, msg = g.routeURI(ctx, uri); in == nil {
			g.log.Warn("gateway refused a request", "method", req.Method, "detail", msg)
			return errorResponse(req.ID, codeNotApproved, "rugwatch gateway: "+msg)
		}
	}
	params, err := json.Marshal(p)
	if err != nil {
		return errorResponse(req.ID, jsonrpc.CodeInvalidParams, err.Error())
	}
	resp := g.forward(ctx, in, req.ID, req.Method, params)
	if resp.Error == nil && req.Method != "resources/read" {
		g.mu.Lock()
		if req.Method == "resources/unsubscribe" {
			delete(g.subscribed, uri)
		} else if len(g.subscribed) < maxSubscribed {
			g.subscribed[uri] = in
		}
		g.mu.Unlock()
	}
	return resp
}

// routeURI returns the server's session a resource URI goes to, or nil
// and why it is served by none.
func (g *gateway) routeURI(ctx context.Context, uri string) (*inner, string) {
	shown := visible.Line(uri)
	v := g.current(ctx, kindResources, uri)
	if r, ok := v.routes[uri]; ok {
		return r.in, ""
	}
	if servers := v.shadowed[uri]; servers != nil {
		return nil, fmt.Sprintf("resource %q is listed by %s, so served by neither; leave all but one out of the gateway (gateway.exclude)",
			shown, strings.Join(servers, " and "))
	}
	ins := g.covering(ctx, uri)
	switch {
	case len(ins) == 1:
		return ins[0], ""
	case len(g.inners) == 1:
		return g.inners[0], ""
	case len(ins) == 0:
		return nil, fmt.Sprintf("resource %q is not served by this gateway: no server lists it or has a resource template (RFC 6570 level 1) that covers it", shown)
	}
	var servers []string
	for _, in := range ins {
		servers = append(servers, in.server)
	}
	slices.Sort(servers)
	return nil, fmt.Sprintf("resource %q is covered by resource templates of %s, so served by neither; leave all but one out of the gateway (gateway.exclude)",
		shown, strings.Join(servers, " and "))
}

// covering returns the sessions of the servers whose resource templates
// cover uri, from the last merge of the templates or, when none of those
// covers it, a fresh one.
func (g *gateway) covering(ctx context.Context, uri string) []*inner {
	g.mu.Lock()
	v := g.views[kindTemplates.list]
	g.mu.Unlock()
	if v != nil {
		if ins := v.covering(uri); len(ins) > 0 {
			return ins
		}
	}
	return g.merge(ctx, kindTemplates).covering(uri)
}

// uriTemplate is one resource template a server listed, compiled.
type uriTemplate struct {
	in *inner
	re *regexp.Regexp
}

// covering returns, once each, the servers with a template covering uri.
// Every template listed counts, those served by neither included: a URI
// two servers' templates cover is no one's.
func (v *view) covering(uri string) []*inner {
	var ins []*inner
	for _, t := range v.templates {
		if !slices.Contains(ins, t.in) && t.re.MatchString(uri) {
			ins = append(ins, t.in)
		}
	}
	return ins
}

// compileTemplates compiles the resource templates one server listed; one
// beyond level 1 is left out (no URI routes by it), and logged.
func (g *gateway) compileTemplates(in *inner, templates []string) []uriTemplate {
	var out []uriTemplate
	for _, t := range templates {
		re, err := levelOne(t)
		if err != nil {
			g.log.Debug("a resource template is not routed by", "server", in.server, "template", visible.Line(t), "error", err)
			continue
		}
		out = append(out, uriTemplate{in, re})
	}
	return out
}

// The characters a level 1 expression expands to: unreserved ones and
// percent-encoded octets (RFC 6570 section 3.2.2), possibly none (an
// undefined variable expands to the empty string).
const levelOneValue = `(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})*`

// varName is an RFC 6570 varname.
var varName = regexp.MustCompile(`^(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*$`)

// levelOne compiles a URI template of RFC 6570 level 1 (literals and
// {var}) into a pattern of every URI it expands to. A template with any
// other expression ({+var}, {/var}, {?q}, {a,b}, {var:3}, {var*}) is
// refused, not guessed at.
func levelOne(tmpl string) (*regexp.Regexp, error) {
	if len(tmpl) > maxTemplateLen {
		return nil, fmt.Errorf("longer than %d bytes", maxTemplateLen)
	}
	var re strings.Builder
	re.WriteString("^")
	for rest := tmpl; rest != ""; {
		open := strings.IndexByte(rest, '{')
		lit := rest
		if open >= 0 {
			lit = rest[:open]
		}
		if strings.ContainsRune(lit, '}') {
			return nil, errors.New("a '}' outside an expression")
		}
		re.WriteString(regexp.QuoteMeta(lit))
		if open < 0 {
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, errors.New("an unclosed expression")
		}
		if name := rest[open+1 : open+end]; !varName.MatchString(name) {
			return nil, fmt.Errorf("expression {%s} is not of level 1 ({var})", visible.Line(name))
		}
		re.WriteString(levelOneValue)
		rest = rest[open+end+1:]
	}
	re.WriteString("$")
	return regexp.Compile(re.String())
}
