// Package ui serves the web UI for exploring sessions: a static page and ES modules embedded in
// the binary, which read the JSON API under /api/v1/ from the same origin. There is no build step
// and nothing is loaded from another origin. Its landing view is the overview of a period; its
// charts are SVG elements the scripts create (chart.js), with the same numbers in a table.
//
// Every value the UI shows comes from traffic and is written by whoever sent it, so the scripts
// only ever put data into the page as text (textContent, attribute values), and the handler sends
// a Content-Security-Policy that allows scripts from this origin only: no inline script, no eval.
//
// The package imports nothing from apisessions; the HTTP server mounts Handler at "/".
package ui
