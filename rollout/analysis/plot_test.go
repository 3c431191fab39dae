package analysis

import (
	"fmt"
	"math"
	"strings"
)

// plot draws the benchmark's two headline results as an SVG: the worst false-rollback rate of healthy canaries
// (30 minutes) against canary req/s, and the p95 time to roll back canaries failing 20% and 5% of requests
// against canary req/s, per rule.
func plot(h healthyResults, det detection, flaggerN int) string {
	const w, ht, panelW, panelH, left, top = 960, 380, 380, 260, 60, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, ht)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, ht)
	colors := map[string]string{ruleSequential: "#1f77b4", ruleLegacy: "#d62728", "Flagger-style": "#2ca02c", ruleOracle: "#7f7f7f"}
	xs := func(x0 float64, rps float64) float64 {
		return x0 + (math.Log(rps)-math.Log(4))/(math.Log(250)-math.Log(4))*panelW
	}
	axes := func(x0 float64, title, ylabel string, yticks []float64, y func(float64) float64, ylab func(float64) string, xt []int) {
		fmt.Fprintf(&b, `<text x="%g" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-20, title)
		fmt.Fprintf(&b, `<rect x="%g" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", x0, top, panelW, panelH)
		for _, t := range yticks {
			fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
				x0, x0+panelW, y(t), y(t), x0-4, y(t)+4, ylab(t))
		}
		for _, r := range xt {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", xs(x0, float64(r)), top+panelH+16, r)
		}
		fmt.Fprintf(&b, `<text x="%g" y="%d" text-anchor="middle">canary requests per second</text>`+"\n", x0+panelW/2, top+panelH+32)
		fmt.Fprintf(&b, `<text transform="translate(%g,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", x0-42, top+panelH/2, ylabel)
	}
	line := func(pts [][2]float64, color, dash string) {
		var p []string
		for _, pt := range pts {
			if math.IsNaN(pt[1]) || math.IsInf(pt[1], 0) {
				continue
			}
			p = append(p, fmt.Sprintf("%.1f,%.1f", pt[0], pt[1]))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", pt[0], pt[1], color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`+"\n", strings.Join(p, " "), color, dash)
	}

	// Panel 1: false rollbacks, linear 0..100%.
	x1 := float64(left)
	y1 := func(r float64) float64 { return top + panelH - r*panelH }
	axes(x1, "Healthy canaries rolled back (worst scenario, 30 min)", "rolled back", []float64{0, 0.05, 0.25, 0.5, 0.75, 1}, y1,
		func(t float64) string { return fmt.Sprintf("%.0f%%", t*100) }, benchRPS)
	fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#000" stroke-dasharray="4 3"/><text x="%g" y="%.1f" font-size="10">bound 5%%</text>`+"\n",
		x1, x1+panelW, y1(0.05), y1(0.05), x1+panelW-50, y1(0.05)-3)
	for _, rule := range []string{ruleSequential, ruleLegacy, flaggerName(flaggerN)} {
		var pts [][2]float64
		for _, rps := range benchRPS {
			worst := 0.0
			for _, s := range healthyScenarios {
				if !s.bursts {
					worst = max(worst, h.rate(s.label, rps, rule, 1800))
				}
			}
			pts = append(pts, [2]float64{xs(x1, float64(rps)), y1(worst)})
		}
		color := colors[rule]
		if color == "" {
			color = colors["Flagger-style"]
		}
		line(pts, color, "")
	}

	// Panel 2: p95 time to roll back, log seconds 1..1800.
	x2 := float64(left + panelW + 100)
	y2 := func(s float64) float64 {
		return top + panelH - (math.Log(max(s, 1))/math.Log(1800))*panelH
	}
	axes(x2, "p95 seconds to roll back (solid: 20%, dashed: 5% errors)", "seconds", []float64{1, 3, 10, 30, 100, 300, 1800}, y2,
		func(t float64) string { return fmt.Sprintf("%g", t) }, []int{5, 10, 20, 100})
	for _, rule := range []string{ruleSequential, ruleLegacy, "Flagger-style", ruleOracle} {
		for _, e := range []struct {
			rate float64
			dash string
		}{{0.2, ""}, {0.05, "6 4"}} {
			var pts [][2]float64
			for _, rps := range []int{5, 10, 20, 100} {
				pts = append(pts, [2]float64{xs(x2, float64(rps)), y2(det[detectKey(e.rate, rps)][rule][1])})
			}
			line(pts, colors[rule], e.dash)
		}
	}

	// Legend.
	ly := float64(ht - 22)
	lx := float64(left)
	for _, rule := range []string{ruleSequential, ruleLegacy, fmt.Sprintf("Flagger-style (N=%d)", flaggerN), ruleOracle} {
		key := rule
		if strings.HasPrefix(rule, "Flagger") {
			key = "Flagger-style"
		}
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="14" height="4" fill="%s"/><text x="%g" y="%g">%s</text>`+"\n", lx, ly-4, colors[key], lx+18, ly, rule)
		lx += 200
	}
	b.WriteString("</svg>\n")
	return b.String()
}
