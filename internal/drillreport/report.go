// Package drillreport writes a drill's measurements as one self-contained
// HTML page: a timeline in inline SVG and the figures, with no script and
// nothing fetched from a network.
package drillreport

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drill"
)

// Report is what the page shows.
type Report struct {
	Name        string // the drill, e.g. apiserver
	Endpoint    string // where the probe read the API
	Passed      bool
	Error       string
	MaxRecovery time.Duration
	Result      *drill.Result
	Generated   time.Time
}

//go:embed report.html.tmpl
var pageTemplate string

var page = template.Must(template.New("report").Parse(pageTemplate))

// Write renders the report.
func Write(w io.Writer, r Report) error {
	if r.Result == nil {
		return fmt.Errorf("the %s drill measured nothing, so there is no report to write", r.Name)
	}
	return page.Execute(w, layout(r))
}

// Geometry of the timeline, in SVG user units.
const (
	width      = 1000.0
	labelWidth = 190.0
	plotWidth  = width - labelWidth - 20
	top        = 24.0 // room for the axis labels
	apiRow     = 28.0
	nodeRow    = 34.0
	gap        = 14.0
)

type view struct {
	Report
	Verdict   string
	Height    float64
	PlotLeft  float64
	PlotRight float64
	APIY      float64
	Ticks     []tick
	Probes    []probe
	Rows      []row
	Lines     []line
	Events    []drill.Event
	Figures   []figure
}

type tick struct {
	X     float64
	Label string
}

type probe struct {
	X, W  float64
	OK    bool
	Title string
}

type row struct {
	Node  string
	Y     float64 // centre line
	Bars  []bar
	Marks []mark
}

type bar struct {
	X, W  float64
	Title string
}

type mark struct {
	X     float64
	Kind  drill.EventKind
	Title string
}

type line struct {
	X     float64
	Class string
	Label string
}

type figure struct {
	ID, Name, Value string
}

func layout(r Report) view {
	res := r.Result
	tl := res.Timeline
	end := span(res)
	step := tickStep(end)
	end = math.Ceil(end/step) * step
	x := func(s drill.Seconds) float64 { return labelWidth + s.Duration().Seconds()/end*plotWidth }

	v := view{Report: r, Verdict: "FAIL", PlotLeft: labelWidth, PlotRight: labelWidth + plotWidth, APIY: top}
	if r.Passed {
		v.Verdict = "PASS"
	}
	for t := 0.0; t <= end+1e-9; t += step {
		v.Ticks = append(v.Ticks, tick{X: x(drill.Seconds(t * float64(time.Second))), Label: fmt.Sprintf("%gs", t)})
	}
	for i, p := range tl.Probes {
		next := p.At + drill.Seconds(250*time.Millisecond)
		if i+1 < len(tl.Probes) {
			next = tl.Probes[i+1].At
		}
		answer := "answered"
		if !p.OK {
			answer = "failed"
		}
		v.Probes = append(v.Probes, probe{X: x(p.At), W: max(x(next)-x(p.At), 1), OK: p.OK, Title: fmt.Sprintf("%s: %s", p.At, answer)})
	}

	y := top + apiRow + gap + nodeRow/2
	for _, n := range tl.Nodes {
		rw := row{Node: n, Y: y}
		var active *drill.Event
		for _, e := range tl.Events {
			if e.Node != n {
				continue
			}
			title := fmt.Sprintf("%s: %s %s", e.At, describe(e.What), e.Pod)
			switch e.What {
			case drill.EventCheckpointActive:
				active = &e
			case drill.EventCheckpointSteppedDown:
				if active != nil {
					rw.Bars = append(rw.Bars, bar{X: x(active.At), W: max(x(e.At)-x(active.At), 2),
						Title: fmt.Sprintf("checkpoint of %s served from %s to %s", e.Pod, active.At, e.At)})
					active = nil
				}
			}
			rw.Marks = append(rw.Marks, mark{X: x(e.At), Kind: e.What, Title: title})
		}
		if active != nil { // still serving when the drill ended
			rw.Bars = append(rw.Bars, bar{X: x(active.At), W: max(labelWidth+plotWidth-x(active.At), 2),
				Title: fmt.Sprintf("checkpoint of %s served from %s to the end of the drill", active.Pod, active.At)})
		}
		v.Rows = append(v.Rows, rw)
		y += nodeRow
	}
	v.Height = y - nodeRow/2 + gap + 10

	for _, l := range []struct {
		at    drill.Seconds
		class string
		label string
	}{
		{res.APIBack, "back", "API back"},
		{res.DaemonSetReady, "whole", "DaemonSet whole"},
		{res.SteppedDown, "stepped", "checkpoints stepped down"},
		{res.Settled, "settled", "checks pass"},
	} {
		if l.at > 0 {
			v.Lines = append(v.Lines, line{X: x(l.at), Class: l.class, Label: fmt.Sprintf("%s: %s", l.label, l.at)})
		}
	}

	v.Events = slices.Clone(tl.Events)
	slices.SortStableFunc(v.Events, func(a, b drill.Event) int { return cmp.Compare(a.At, b.At) })
	v.Figures = figures(r, v.Verdict)
	return v
}

// span is the latest time the drill recorded, in seconds, at least one.
func span(res *drill.Result) float64 {
	last := max(res.DaemonSetReady, res.SteppedDown, res.Settled, res.APISteady)
	for _, p := range res.Timeline.Probes {
		last = max(last, p.At)
	}
	for _, e := range res.Timeline.Events {
		last = max(last, e.At)
	}
	return max(last.Duration().Seconds()*1.03, 1)
}

// tickStep keeps the axis to a dozen labels or fewer.
func tickStep(end float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if end/s <= 12 {
			return s
		}
	}
	return 1200
}

func describe(k drill.EventKind) string {
	switch k {
	case drill.EventDeleted:
		return "deleted"
	case drill.EventCheckpointActive:
		return "checkpoint began to serve for"
	case drill.EventCheckpointSteppedDown:
		return "checkpoint stepped down for"
	case drill.EventReady:
		return "new pod Ready:"
	}
	return string(k)
}

func figures(r Report, verdict string) []figure {
	res := r.Result
	maybe := func(s drill.Seconds) string {
		if s == 0 {
			return "—"
		}
		return s.String()
	}
	return []figure{
		{"verdict", "Verdict", verdict},
		{"deleted", "API server pods deleted", fmt.Sprint(len(res.Deleted))},
		{"requests", "Requests through " + r.Endpoint, fmt.Sprint(res.Requests)},
		{"failed-requests", "Failed requests", fmt.Sprint(res.FailedRequests)},
		{"longest-gap", "Longest gap between answers", res.LongestGap.String()},
		{"api-back", fmt.Sprintf("API back (limit %s)", r.MaxRecovery), maybe(res.APIBack)},
		{"api-steady", "API steady", maybe(res.APISteady)},
		{"daemonset-ready", "New API server pod Ready on every node", maybe(res.DaemonSetReady)},
		{"stepped-down", "Checkpoints stepped down", maybe(res.SteppedDown)},
		{"settled", "Every check but DNS passes", maybe(res.Settled)},
	}
}
