package ops

import "html/template"

// pageCSS is the one stylesheet, inline; the Content-Security-Policy
// allows exactly these bytes by their hash. Server text sits in <pre> or
// in cells with white-space: pre-wrap and overflow-wrap: anywhere, so
// padding cannot push a word out of view and nothing overlaps.
const pageCSS = `
body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#1b1f24;background:#fff}
h1{font-size:1.35rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
a{color:#0b57d0}nav{font-size:.9rem;margin-bottom:.6rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #d8dee4;vertical-align:top}
th{background:#f3f5f7;font-weight:600}
.u{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;overflow-wrap:anywhere;unicode-bidi:isolate;direction:ltr}
pre.u{background:#f6f8fa;border:1px solid #d8dee4;padding:.6rem .8rem;margin:.3rem 0;max-height:40rem;overflow:auto}
.s-approved{color:#116329}.s-pending{color:#7d4e00}.s-drifted,.s-revoked,.s-removed{color:#b3261e;font-weight:600}
.sev-critical{color:#b3261e;font-weight:600}.sev-warning{color:#7d4e00}
del{background:#ffd7d5;color:#82071e;text-decoration:line-through}ins{background:#ccffd8;color:#055d20;text-decoration:none}
pre.u.cmd{background:#1b1f24;color:#f0f3f6;padding:.6rem .8rem;border-radius:4px;user-select:all}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem}
.muted{color:#59636e;font-size:.9rem}
.drift{background:#ffebe9;border:1px solid #b3261e;padding:.4rem .7rem;margin:.4rem 0}
.badge{display:inline-block;font-weight:600;color:#b3261e;margin-right:.5rem}
details{margin:.2rem 0}summary{cursor:pointer;color:#59636e;font-size:.9rem}
details pre.u{max-height:20rem}
`

// pageSource is every page's template; html/template escapes each value
// for where it lands (text, attribute, URL).
const pageSource = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.}} · rugwatch</title><style>` + pageCSS + `</style></head><body>{{end}}
{{define "foot"}}<p class="muted">rugwatch · read-only view · server text is shown with every hidden character escaped</p></body></html>{{end}}

{{define "nav"}}<nav><a href="/">servers</a> · <a href="/events">recent events</a>{{end}}

{{define "error"}}{{template "head" .Title}}{{template "nav"}}</nav><h1>{{.Title}}</h1><p class="u">{{.Message}}</p>{{template "foot"}}{{end}}

{{define "pollerror"}}{{if .ErrorSummary}}<div class="u muted">{{.ErrorSummary}}</div>{{if .ErrorDetail}}<details><summary>the server's stderr (escaped)</summary><pre class="u">{{.ErrorDetail}}</pre></details>{{end}}{{end}}{{end}}

{{define "drifts"}}{{range .}}<span class="badge">{{.What}} {{.State}}</span>{{end}}{{end}}

{{define "driftblock"}}{{if .Drifts}}<div class="drift" id="drifts">{{range .Drifts}}<p><span class="badge">{{.What}} {{.State}}</span> <span class="u">{{.Detail}}</span></p>{{end}}
{{if .ApproveLaunch}}<p>After review (<code>rugwatch history</code> shows what changed), approve with:</p><pre class="u cmd" id="approve-launch">{{.ApproveLaunch}}</pre>{{end}}</div>{{end}}{{end}}

{{define "counts"}}{{range .}}{{if .N}}<span class="s-{{.State}}">{{.N}} {{.State}}</span> {{end}}{{end}}{{end}}

{{define "servers"}}{{template "head" "servers"}}{{template "nav"}}</nav><h1>Servers</h1>
<table><tr><th>server</th><th>severity</th><th>drift</th><th>tools</th><th>reachable</th><th>transport</th><th>protocol</th><th>last polled</th><th>instructions</th></tr>
{{range .Servers}}<tr class="server-row" data-server="{{.Name}}"><td><a href="/servers/{{.Name}}">{{.Name}}</a>{{if .NotSandboxed}}<div class="warn">NOT SANDBOXED</div>{{end}}</td>
<td class="sev-{{.Severity}}">{{.Severity}}</td><td>{{template "drifts" .Drifts}}</td><td>{{template "counts" .Counts}}</td>
<td>{{if .Reachable}}yes{{else}}<span class="s-drifted">no</span>{{end}}{{template "pollerror" .}}</td>
<td>{{.Transport}}</td><td>{{.Protocol}}</td><td>{{.LastPolled}}</td><td>{{.Instructions}}</td></tr>
{{else}}<tr><td colspan="9">no servers configured</td></tr>{{end}}</table>{{template "foot"}}{{end}}

{{define "server"}}{{template "head" .Server.Name}}{{template "nav"}}</nav>
<h1>{{.Server.Name}}</h1>
<p><span class="sev-{{.Server.Severity}}">{{.Server.Severity}}</span> · {{.Server.Transport}}{{if .Server.Protocol}} · protocol {{.Server.Protocol}}{{end}} · {{if .Server.Reachable}}reachable{{else}}<span class="s-drifted">unreachable</span>{{end}}{{if .Server.LastPolled}} · last polled {{.Server.LastPolled}}{{end}} · {{template "counts" .Server.Counts}}</p>
{{if .Server.NotSandboxed}}<p class="warn u">{{.Server.NotSandboxed}}</p>{{end}}
{{template "driftblock" .Server}}
{{template "pollerror" .Server}}
{{if .Server.Instructions}}<p id="instructions">instructions: <span class="s-{{.Server.InstructionsState}}">{{.Server.InstructionsState}}</span>{{if .Server.InstructionsSignatures}} · <span class="sig">signatures: {{.Server.InstructionsSignatures}}</span>{{end}}</p>{{end}}
<table><tr><th>tool</th><th>severity</th><th>state</th><th>findings</th></tr>
{{range .Tools}}<tr class="tool-row" data-tool="{{.Name}}"><td class="u"><a href="{{.Href}}">{{.Name}}</a></td><td class="sev-{{.Severity}}">{{.Severity}}</td><td><span class="s-{{.State}}">{{.State}}</span>{{if .Signatures}} <span class="sig">signatures: {{.Signatures}}</span>{{end}}</td><td>{{.Findings}}</td></tr>
{{else}}<tr><td colspan="4">no tools seen yet</td></tr>{{end}}</table>{{template "foot"}}{{end}}

{{define "events"}}{{template "head" "recent events"}}{{template "nav"}}</nav><h1>Recent events</h1>
<p class="muted">The newest {{.Limit}} events of every server, newest first; <code>rugwatch history</code> has them all.</p>
{{if .Events}}<table><tr><th>seq</th><th>when</th><th>severity</th><th>event</th><th>server / tool</th><th>detail</th></tr>
{{range .Events}}<tr><td>{{.Seq}}</td><td>{{.At}}</td><td class="sev-{{.Severity}}">{{.Severity}}</td><td>{{.Type}}</td>
<td class="u">{{if .ServerHref}}<a href="{{.ServerHref}}">{{.Server}}</a>{{end}}{{if .ToolHref}} / <a href="{{.ToolHref}}">{{.Tool}}</a>{{end}}</td>
<td class="u">{{.Changes}}{{if .Message}} {{.Message}}{{end}}{{if .Keys}} (key {{.Keys}}){{end}}</td></tr>{{end}}</table>
{{else}}<p>no events</p>{{end}}{{template "foot"}}{{end}}

{{define "tool"}}{{template "head" .Tool}}{{template "nav"}} · <a href="{{.ServerHref}}">{{.Server}}</a></nav>
<h1 class="u">{{.Server}} / {{.Tool}}</h1>
<p><span class="s-{{.State}}">{{.State}}</span> · <span class="sev-{{.Severity}}">{{.Severity}}</span>{{if .Signatures}} · <span class="sig" id="signatures">signatures: {{.Signatures}}</span>{{end}}</p>
{{template "driftblock" .}}
<table><tr><th>approved digest</th><td class="u">{{if .ApprovedDigest}}{{.ApprovedDigest}}{{else}}never approved{{end}}</td></tr>
<tr><th>observed digest</th><td class="u">{{.ObservedDigest}}</td></tr></table>
{{if .Approve}}<h2>Approve what is observed now</h2>
{{if .ApproveHidden}}<p class="warn">The tool name holds hidden characters, shown escaped below: the command as shown is not the name's bytes. Review with <code>rugwatch diff</code> and approve from the terminal.</p>{{end}}
<pre class="u cmd" id="approve">{{.Approve}}</pre>{{end}}
<h2>Approved → observed</h2>
{{if .Changes}}<table><tr><th>path</th><th>change</th></tr>
{{range .Changes}}<tr><td class="u">{{.Op}} {{.Path}}</td><td>
{{if .Words}}<div class="muted">word diff: <del>removed</del> <ins>inserted</ins></div><pre class="u diff">{{range .Words}}{{if eq .Kind "del"}}<del>{{.Text}}</del>{{else if eq .Kind "ins"}}<ins>{{.Text}}</ins>{{else}}{{.Text}}{{end}}{{end}}</pre>
{{else}}{{if .Old}}<div class="muted">approved</div><pre class="u">{{.Old}}</pre>{{end}}{{if .New}}<div class="muted">observed</div><pre class="u">{{.New}}</pre>{{end}}{{end}}
</td></tr>{{end}}</table>
{{else if .NeverApproved}}<p>Never approved: the whole observed definition is below.</p>
{{else}}<p>The observed definition equals the approved one{{if ne .ApprovedDigest .ObservedDigest}}, or the approved definition is not available or does not verify{{end}}.</p>{{end}}
<h2>Findings</h2>
{{if .Findings}}<table><tr><th>severity</th><th>rule</th><th>path</th><th>message</th></tr>
{{range .Findings}}<tr><td class="sev-{{.Severity}}">{{.Severity}}</td><td>{{.Rule}}</td><td class="u">{{.Path}}</td><td class="u">{{.Message}}</td></tr>{{end}}</table>
{{else}}<p>none</p>{{end}}
<h2>Observed definition</h2><pre class="u" id="definition">{{.Definition}}</pre>
<h2>History</h2>
{{if .History}}<table><tr><th>seq</th><th>when</th><th>event</th><th>severity</th><th>detail</th></tr>
{{range .History}}<tr><td>{{.Seq}}</td><td>{{.At}}</td><td>{{.Type}}</td><td class="sev-{{.Severity}}">{{.Severity}}</td><td class="u">{{.Changes}}{{if .Message}} {{.Message}}{{end}}{{if .Keys}} (key {{.Keys}}){{end}}</td></tr>{{end}}</table>
{{else}}<p>no events</p>{{end}}
{{template "foot"}}{{end}}
`

var pages = template.Must(template.New("").Parse(pageSource))
