package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// Named is a result with the name it is reported under.
type Named struct {
	Name string
	*Result
}

// WriteHTML writes a self-contained report (no scripts, no external
// files): a table per result, throughput over time, and the latency
// distribution, with one line per result so that runs compare at a glance.
func WriteHTML(w io.Writer, title string, results ...Named) error {
	var tput, dist []series
	for i, r := range results {
		color := palette[i%len(palette)]
		s := series{name: r.Name, color: color}
		for _, sec := range r.Seconds {
			s.points = append(s.points, [2]float64{float64(sec.At), float64(sec.Ops)})
		}
		tput = append(tput, s)
		d := series{name: r.Name, color: color}
		for _, p := range r.Distribution {
			if p.Percentile >= 100 {
				continue
			}
			// x: the "nines" (-log10 of the tail), so 90, 99, 99.9 are evenly spaced
			d.points = append(d.points, [2]float64{-math.Log10(1 - p.Percentile/100), p.LatencyMs})
		}
		dist = append(dist, d)
	}
	data := struct {
		Title      string
		Results    []Named
		Throughput template.HTML
		Latency    template.HTML
	}{
		Title:      title,
		Results:    results,
		Throughput: template.HTML(chart(tput, "seconds", "ops/s", nil)),
		Latency:    template.HTML(chart(dist, "percentile", "latency (ms)", map[float64]string{0: "0", 1: "90", 2: "99", 3: "99.9", 4: "99.99"})),
	}
	return reportTemplate.Execute(w, data)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}

type series struct {
	name, color string
	points      [][2]float64
}

// chart draws series as an SVG line chart. xTicks, if set, labels chosen x
// values; otherwise five evenly spaced ticks are drawn.
func chart(all []series, xName, yName string, xTicks map[float64]string) string {
	const w, h, left, bottom, top, right = 640.0, 300.0, 60.0, 40.0, 20.0, 130.0
	maxX, maxY := 1.0, 1.0
	for _, s := range all {
		for _, p := range s.points {
			maxX, maxY = math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	maxY *= 1.1
	px := func(x float64) float64 { return left + x/maxX*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/maxY*(h-bottom-top) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, w, h)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333"/>`, left, top, left, h-bottom)
	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, left-4, py(y)+4, short(y))
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/>`, left, py(y), w-right, py(y))
	}
	if xTicks == nil {
		xTicks = map[float64]string{}
		for i := 0; i <= 4; i++ {
			x := maxX * float64(i) / 4
			xTicks[x] = short(x)
		}
	}
	for x, label := range xTicks {
		if x <= maxX {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, px(x), h-bottom+16, template.HTMLEscapeString(label))
		}
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`, (left+w-right)/2, h-6, template.HTMLEscapeString(xName))
	fmt.Fprintf(&b, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, h/2, h/2, template.HTMLEscapeString(yName))
	for i, s := range all {
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`,
			w-right+10, top+float64(i)*16, s.color, w-right+24, top+float64(i)*16+9, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func short(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

var reportTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}</style>
</head><body>
<h1>{{.Title}}</h1>
<table><tr><th>run</th><th>clients</th><th>mix</th><th>ops/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th></tr>
{{range .Results}}<tr><td>{{.Name}}</td><td>{{.Config.Clients}}</td><td>{{.Config.Mix}}</td><td>{{printf "%.0f" .OpsPerSecond}}</td>
<td>{{printf "%.2f" .Latency.P50}}</td><td>{{printf "%.2f" .Latency.P90}}</td><td>{{printf "%.2f" .Latency.P99}}</td>
<td>{{printf "%.2f" .Latency.P999}}</td><td>{{printf "%.2f" .Latency.Max}}</td><td>{{range $k, $v := .Errors}}{{$k}}={{$v}} {{end}}</td></tr>
{{end}}</table>
<h2>Throughput over time</h2>{{.Throughput}}
<h2>Latency distribution</h2>{{.Latency}}
</body></html>
`))
