package drillreport

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-selfhost/kubectl-selfhost/internal/browser"
	"github.com/kubectl-selfhost/kubectl-selfhost/internal/drill"
)

func sec(f float64) drill.Seconds { return drill.Seconds(time.Duration(f * float64(time.Second))) }

// sample is a drill in which the API is down for 9 s: 36 failed probes of 60.
func sample() Report {
	r := &drill.Result{
		Deleted: []string{"kube-apiserver-a", "kube-apiserver-b", "kube-apiserver-c"},
		APIBack: sec(9), APISteady: sec(9.5), DaemonSetReady: sec(15), SteppedDown: sec(31), Settled: sec(40),
		LongestGap: sec(9),
	}
	tl := &r.Timeline
	tl.Nodes = []string{"cp-1", "cp-2", "cp-3"}
	for i := range 60 {
		at := sec(float64(i) * 0.25)
		ok := i >= 36 && i != 38
		tl.Probes = append(tl.Probes, drill.Probe{At: at, OK: ok})
		r.Requests++
		if !ok {
			r.FailedRequests++
		}
	}
	for i, n := range tl.Nodes {
		old, fresh := "kube-apiserver-"+string(rune('a'+i)), "kube-apiserver-new"+string(rune('a'+i))
		tl.Events = append(tl.Events,
			drill.Event{At: sec(0.05), Node: n, What: drill.EventDeleted, Pod: old},
			drill.Event{At: sec(6 + float64(i)), Node: n, What: drill.EventCheckpointActive, Pod: old},
			drill.Event{At: sec(12 + float64(i)), Node: n, What: drill.EventReady, Pod: fresh},
			drill.Event{At: sec(28 + float64(i)), Node: n, What: drill.EventCheckpointSteppedDown, Pod: old},
		)
	}
	return Report{Name: "apiserver", Endpoint: "https://127.0.0.1:6443", Passed: true, MaxRecovery: 45 * time.Second,
		Result: r, Generated: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
}

func TestThePageIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, sample()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, banned := range []string{"<script", "<link", " src=", "@import", "url("} {
		if strings.Contains(page, banned) {
			t.Errorf("the page holds %q: it must need nothing beyond itself", banned)
		}
	}
	for _, u := range regexp.MustCompile(`https?://[^"\s<;]+[^"\s<;.]`).FindAllString(page, -1) {
		if u != "https://127.0.0.1:6443" && u != "http://www.w3.org/2000/svg" {
			t.Errorf("the page names %s; only the probed endpoint and the SVG namespace may appear", u)
		}
	}
}

func TestWriteRefusesADrillThatMeasuredNothing(t *testing.T) {
	err := Write(&bytes.Buffer{}, Report{Name: "apiserver"})
	if err == nil || !strings.Contains(err.Error(), "measured nothing") {
		t.Fatalf("err = %v", err)
	}
}

// chromium finds the browser; CI must have one, elsewhere its absence skips.
func chromium(t *testing.T) *browser.Chromium {
	c, err := browser.Find()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return c
}

// TestAHeadlessBrowserDrawsTheTimelineAndTheFailedCount opens the page in a
// real Chromium: the DOM it built has the timeline with one red mark per
// failed request, the count it shows is the JSON's, and its screenshot
// holds the colours of failed requests, answers and a serving checkpoint.
func TestAHeadlessBrowserDrawsTheTimelineAndTheFailedCount(t *testing.T) {
	c := chromium(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "drill.html")
	rep := sample()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, rep); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx := context.Background()
	dom, err := c.DOM(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	shown, err := ShownFailedRequests(dom)
	if err != nil {
		t.Fatal(err)
	}
	if shown != rep.Result.FailedRequests {
		t.Errorf("the page shows %d failed requests, the result has %d", shown, rep.Result.FailedRequests)
	}
	if got := TimelineFailures(dom); got != rep.Result.FailedRequests {
		t.Errorf("the timeline draws %d failed requests, want %d", got, rep.Result.FailedRequests)
	}
	for _, n := range rep.Result.Timeline.Nodes {
		if !strings.Contains(dom, `data-node="`+n+`"`) {
			t.Errorf("the timeline has no row for %s", n)
		}
	}

	shot := filepath.Join(dir, "drill.png")
	if err := c.Screenshot(ctx, file, shot, 1080, 900); err != nil {
		t.Fatal(err)
	}
	colours := countColours(t, shot, map[string][3]uint8{"failed": {0xc6, 0x28, 0x28}, "answered": {0x66, 0xbb, 0x6a}, "serving": {0xff, 0xb7, 0x4d}})
	for name, n := range colours {
		if n < 200 {
			t.Errorf("the screenshot has %d pixels of the %s colour; the timeline was not drawn", n, name)
		}
	}
}

func countColours(t *testing.T, file string, want map[string][3]uint8) map[string]int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for name := range want {
		counts[name] = 0
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for name, c := range want {
				if near(r, c[0]) && near(g, c[1]) && near(bl, c[2]) {
					counts[name]++
				}
			}
		}
	}
	return counts
}

func near(v uint32, c uint8) bool {
	d := int(v>>8) - int(c)
	return d >= -6 && d <= 6
}
