package drillreport

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var failedCount = regexp.MustCompile(`id="failed-requests"[^>]*>\s*(\d+)\s*<`)

// ShownFailedRequests reads the failed-request count a rendered page shows,
// for a test to compare with the drill's JSON.
func ShownFailedRequests(dom string) (int, error) {
	m := failedCount.FindStringSubmatch(dom)
	if m == nil {
		return 0, fmt.Errorf("the page shows no failed-request count")
	}
	return strconv.Atoi(m[1])
}

// TimelineFailures counts the failed requests the page's timeline draws.
func TimelineFailures(dom string) int {
	if !strings.Contains(dom, `<svg id="timeline"`) {
		return -1
	}
	return strings.Count(dom, `class="probe fail"`)
}
