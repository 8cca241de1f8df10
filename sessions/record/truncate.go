package record

import "unicode/utf8"

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence: how clear text
// copied from traffic into a record is capped.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	// Step back at most utf8.UTFMax-1 bytes to the start of the rune that crosses the limit.
	for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut]
}
