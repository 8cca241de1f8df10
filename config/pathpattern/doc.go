// Package pathpattern compiles and matches the URL path patterns of the configuration
// (business flow rules, request.path parameters): segments separated by "/", where "*" matches
// one segment, "**" any number of segments (none included), "{name}" one segment and captures
// it, and a segment with "*" inside ("v*") is a glob within one segment. Other segments match
// literally. It imports no other apisessions package.
package pathpattern
