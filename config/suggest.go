package config

import "strings"

// closest returns the candidate nearest to word by edit distance (case, "-" and "_"
// ignored), if it is close enough to be a plausible typo: at most one edit per three
// characters, and at least one edit allowed.
func closest(word string, candidates []string) (string, bool) {
	w := foldKey(word)
	if len(w) > 64 {
		// Nobody mistypes a 64-character key; keep the quadratic distance cheap.
		return "", false
	}
	limit := max(1, len(w)/3)
	best, bestDist := "", limit+1
	for _, c := range candidates {
		d := editDistance(w, foldKey(c))
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best, best != ""
}

func foldKey(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "-", "_")
}

// editDistance is the optimal string alignment distance: insertions, deletions,
// substitutions and transpositions of adjacent bytes each cost one.
func editDistance(a, b string) int {
	// Three rolling rows: the transposition step looks two rows back.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// didYouMean returns ` (did you mean "x"?)` when a candidate is close to word, else "".
func didYouMean(word string, candidates []string) string {
	if s, ok := closest(word, candidates); ok {
		return ` (did you mean "` + s + `"?)`
	}
	return ""
}
