package reports

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// HTML renders index.html: one self-contained page (figures embedded as PNG data URIs,
// no scripts, no network) with the theses' tables, every figure, the run's metadata and
// the command that produced it. problems are shown at the top.
func HTML(ds *Dataset, r *Report, problems []error) ([]byte, error) {
	v := pageView{Dir: filepath.Base(filepath.Clean(ds.Dir)), Thesis: r.Tables, Summary: SummaryTables(ds.Entries),
		Skipped: r.Skipped, Reporter: Version, ReporterCommit: shortCommit(BuildCommit())}
	for _, p := range problems {
		for _, line := range strings.Split(p.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				v.Problems = append(v.Problems, line)
			}
		}
	}
	for _, f := range r.Figures {
		v.Figures = append(v.Figures, figureView{Figure: f,
			Src: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(f.PNG)),
			SVG: PlotsDir + "/" + f.Name + ".svg"})
	}
	if m := ds.Meta; m != nil {
		v.Meta = m
		v.Command = shellJoin(m.Command)
		v.Started = m.Started.UTC().Format(time.RFC3339)
		if m.Ended != nil {
			v.Ended = m.Ended.UTC().Format(time.RFC3339)
			v.Wall = m.Ended.Sub(m.Started).Round(time.Second).String()
		}
		v.Host = [][2]string{
			{"hostname", m.Host.Hostname}, {"kernel", m.Host.Kernel}, {"architecture", m.Host.Arch},
			{"CPU", m.Host.CPUModel}, {"cores", fmt.Sprint(m.Host.Cores)}, {"governor", m.Host.Governor},
			{"SMT", m.Host.SMT}, {"turbo", m.Host.Turbo},
			{"memory", FormatValue(float64(m.Host.MemTotal), "bytes")}, {"Go", m.Host.GoVersion},
			{"edgebpf", strings.TrimSpace(m.Version + " " + shortCommit(m.Commit))},
		}
		for _, d := range m.DataPlanes {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(d.Settings)) {
				kv = append(kv, k+"="+d.Settings[k])
			}
			v.DataPlanes = append(v.DataPlanes, [2]string{d.Name, strings.Join(kv, ", ")})
		}
		for _, e := range m.Experiments {
			params, _ := json.Marshal(e.Params)
			v.Experiments = append(v.Experiments, experimentView{ExperimentMeta: e, Params: string(params)})
			if e.Status == "skipped" && e.SkipReason != "" {
				v.NotRun = append(v.NotRun, e)
			}
		}
		if w := m.Warmup; w != nil {
			v.Run = append(v.Run, [2]string{"warm-up", "off"})
			if w.Enabled {
				v.Run[len(v.Run)-1][1] = "one unrecorded run of the " + w.Profile + " parameters per experiment and data plane"
			}
		}
		if m.Schedule != "" {
			v.Run = append(v.Run, [2]string{"schedule", m.Schedule})
		}
		pin := "none"
		if len(m.Pinning) > 0 {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(m.Pinning)) {
				kv = append(kv, k+" on CPU "+m.Pinning[k])
			}
			pin = strings.Join(kv, ", ")
			if m.PinningNote != "" {
				pin += " (" + m.PinningNote + ")"
			}
		}
		v.Run = append(v.Run, [2]string{"CPU pinning", pin})
		if l := m.StartLoad; l != nil {
			v.Run = append(v.Run, [2]string{"load at start", fmt.Sprintf("loadavg %.2f, %.0f %% busy over %.0f s", l.LoadAvg1, l.BusyPercent, l.Sample)})
		}
		for _, k := range slices.Sorted(maps.Keys(m.Tools)) {
			v.Tools = append(v.Tools, [2]string{k, m.Tools[k]})
		}
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("render index.html: %w", err)
	}
	return b.Bytes(), nil
}

type pageView struct {
	Dir            string
	Meta           *Meta
	Command        string
	Started, Ended string
	Wall           string
	Host           [][2]string
	DataPlanes     [][2]string
	Experiments    []experimentView
	NotRun         []ExperimentMeta
	Run            [][2]string
	Tools          [][2]string
	Problems       []string
	Thesis         []*Table
	Summary        []*Table
	Figures        []figureView
	Skipped        []SkippedFigure
	Reporter       string
	ReporterCommit string
}

type experimentView struct {
	ExperimentMeta
	Params string
}

type figureView struct {
	Figure
	Src template.URL
	SVG string
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// shellJoin renders a command line so that it can be pasted into a shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@%+", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

var pageTemplate = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgebpf report: {{.Dir}}</title>
<style>
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --bg2: #f5f6f8; --warn: #fff4e5; --warnline: #f0a830; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 "Liberation Sans", "DejaVu Sans", Arial, Helvetica, sans-serif; color: var(--fg); background: #fff; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 6px; }
p { margin: 6px 0; }
code { font: 13px/1.4 "Liberation Mono", "DejaVu Sans Mono", monospace; background: var(--bg2); padding: 1px 5px; border-radius: 3px; }
.sub { color: var(--muted); }
.cmd { margin: 10px 0; padding: 8px 12px; background: var(--bg2); border-left: 4px solid #1f77b4; overflow-x: auto; }
.cmd code { background: none; padding: 0; white-space: pre; }
nav { margin: 12px 0 0; }
nav a { margin-right: 16px; color: #1f5fa8; text-decoration: none; }
.problems { background: var(--warn); border: 1px solid var(--warnline); border-radius: 4px; padding: 8px 16px; margin: 16px 0; }
.problems h2 { border: 0; margin: 4px 0; font-size: 17px; }
.problems li { font: 13px/1.4 "Liberation Mono", "DejaVu Sans Mono", monospace; }
.tw { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 4px; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
td code { white-space: normal; overflow-wrap: anywhere; }
.intro { color: var(--muted); max-width: 1100px; }
ul.notes { margin: 4px 0 0; padding-left: 20px; color: var(--muted); font-size: 13px; max-width: 1100px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 22px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 4px; padding: 8px; background: #fff; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
figcaption b { color: var(--fg); }
.skipped li { color: var(--muted); }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 6px 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line); padding-top: 10px; }
</style>
</head>
<body>
<main>
<header>
<h1>edgebpf report: {{.Dir}}</h1>
{{with .Meta}}<p class="sub">profile <b>{{.Profile}}</b> · status <b>{{.Status}}</b> · started {{$.Started}}{{if $.Ended}} · ended {{$.Ended}} ({{$.Wall}}){{end}} · {{.Host.Kernel}} · {{.Host.CPUModel}} ({{.Host.Cores}} cores) · XDP mode {{.XDPMode}}</p>{{end}}
<div class="cmd">produced by <code>{{if .Command}}{{.Command}}{{else}}(command not recorded){{end}}</code></div>
<nav><a href="#tables">Tables</a><a href="#figures">Figures</a><a href="#metadata">Run metadata</a><a href="#results">Every experiment</a></nav>
</header>
{{if .NotRun}}<section class="problems"><h2>Not run on this machine</h2><ul>{{range .NotRun}}<li>{{.Name}} on {{.DataPlane}}: skipped: {{.SkipReason}}</li>{{end}}</ul><p><code>edgebpf check</code> lists what this machine offers.</p></section>{{end}}
{{if .Problems}}<section class="problems"><h2>Problems with this run's data</h2><ul>{{range .Problems}}<li>{{.}}</li>{{end}}</ul><p>Everything else is reported.</p></section>{{end}}

<section id="tables">
<h2>The theses' tables with this run's numbers</h2>
{{if not .Thesis}}<p class="sub">None of the theses' experiments has data in this run.</p>{{end}}
{{range .Thesis}}{{template "table" .}}{{end}}
</section>

<section id="figures">
<h2>Figures</h2>
<p class="sub">One colour per data plane in every figure. Each figure is also beside this page as SVG (plots/).</p>
<div class="grid">
{{range .Figures}}<figure id="fig-{{.Name}}"><img src="{{.Src}}" alt="{{.Title}}"><figcaption><b>{{.Title}}</b> ({{.Source}}). {{.Caption}} <a href="{{.SVG}}">SVG</a></figcaption></figure>
{{end}}</div>
{{if .Skipped}}<h3>Figures without data in this run</h3>
<ul class="skipped">{{range .Skipped}}<li><b>{{.Title}}</b> ({{.Name}}): {{.Reason}}.</li>{{end}}</ul>{{end}}
</section>

<section id="metadata">
<h2>Run metadata</h2>
{{with .Meta}}
<h3>Host</h3>
<dl class="kv">{{range $.Host}}<dt>{{index . 0}}</dt><dd>{{index . 1}}</dd>{{end}}</dl>
<h3>Run</h3>
<dl class="kv"><dt>profile</dt><dd>{{.Profile}}</dd><dt>status</dt><dd>{{.Status}}</dd><dt>XDP mode</dt><dd>{{.XDPMode}}</dd>
<dt>started</dt><dd>{{$.Started}}</dd>{{if $.Ended}}<dt>ended</dt><dd>{{$.Ended}} ({{$.Wall}})</dd>{{end}}
<dt>command</dt><dd><code>{{$.Command}}</code></dd>
{{range $.Run}}<dt>{{index . 0}}</dt><dd>{{index . 1}}</dd>{{end}}
{{range $k, $v := .Topology}}<dt>topology: {{$k}}</dt><dd>{{$v}}</dd>{{end}}
{{range $.Tools}}<dt>tool: {{index . 0}}</dt><dd>{{index . 1}}</dd>{{end}}</dl>
{{if .Warnings}}<ul class="notes">{{range .Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Features}}<h3>Kernel and machine features</h3>
<div class="tw"><table><tr><th>feature</th><th>available</th><th>detail</th></tr>
{{range .Features}}<tr><td>{{.Name}}</td><td>{{if .OK}}yes{{else}}no{{end}}</td><td>{{.Detail}}</td></tr>{{end}}</table></div>{{end}}
<h3>Data planes</h3>
<div class="tw"><table><tr><th>data plane</th><th>settings</th></tr>
{{range $.DataPlanes}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table></div>
<h3>Experiments</h3>
<div class="tw"><table><tr><th>experiment</th><th>data plane</th><th>meter</th><th>reps</th><th>status</th><th>parameters</th></tr>
{{range $.Experiments}}<tr><td>{{.Name}}</td><td>{{.DataPlane}}</td><td>{{.Meter}}</td><td>{{.Reps}}</td><td>{{.Status}}{{if .SkipReason}}: {{.SkipReason}}{{end}}{{if .Error}}: {{.Error}}{{end}}</td><td><code>{{.Params}}</code></td></tr>
{{end}}</table></div>
{{else}}<p class="sub">meta.json is missing.</p>{{end}}
</section>

<section id="results">
<h2>Every experiment</h2>
<p class="sub">Medians with their 95 % confidence interval (distribution-free, as benchstat computes it); n is the number of samples; ⚠ marks too few samples for a finite interval.</p>
{{range .Summary}}{{template "table" .}}{{end}}
</section>

<footer>Rebuilt from meta.json and raw/ alone by edgebpf {{.Reporter}}{{if .ReporterCommit}} ({{.ReporterCommit}}){{end}}: <code>edgebpf report {{.Dir}}</code>. No scripts, no network: this file holds everything it shows.</footer>
</main>
</body>
</html>
{{define "table"}}<h3 id="{{.ID}}">{{.Title}}</h3>
{{if .Intro}}<p class="intro">{{.Intro}}</p>{{end}}
<div class="tw"><table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table></div>
{{if .Notes}}<ul class="notes">{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{end}}`))
