package recommend

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/apisessions/apisessions/config"
)

// WriteText writes the explanations and the snippet: the keys ranked with the numbers behind
// their score, the context parameters, the built-in identifiers seen and what falls back on
// IP + User-Agent. Values are never shown, only their lengths.
func (r *Report) WriteText(w io.Writer) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "Analysed %s from %s (a client is an IP address and a User-Agent).\n",
		plural(r.Requests, "request"), plural(r.Clients, "client"))
	if r.Total > r.Requests {
		fmt.Fprintf(b, "Only the first %d of %d requests were analysed.\n", r.Requests, r.Total)
	}
	if r.Ignored > 0 {
		fmt.Fprintf(b, "%s beyond the analysis bounds were ignored.\n", plural(r.Ignored, "place or value"))
	}
	b.WriteString("\n")
	if len(r.Keys) == 0 {
		b.WriteString("No grouping key to suggest: no cookie, header, query parameter, body field or set-cookie\n" +
			"carries an identifier that recurs across requests, stays with one client and is sent by most\n" +
			"of the client's later requests (a key that some of them lack would split its sessions).\n" +
			"Sessions will be grouped by the built-in identifiers where requests carry them, and\n" +
			"otherwise by the fallback key, IP + User-Agent.\n")
	} else {
		b.WriteString("Suggested grouping keys, best first, ranked by the evidence that a value identifies one\n" +
			"client's session. score = coverage × stability × distinctness × lifetime (counted fully\n" +
			"from 0.5) × evidence. coverage is the share of all requests whose value recurs; stability\n" +
			"the share of the key's requests that carry their client's main value (following rotated\n" +
			"values); distinctness the share of values no other client used; lifetime the share of each\n" +
			"client's traffic its main value spans; evidence 1 when a response issues the value before\n" +
			"requests send it back, 0.5 when not. follow, not in the score, is the share of a client's\n" +
			"requests from its first use of a value on that carry the key (at least 0.75).\n")
		for i, k := range r.Keys {
			writeKey(b, i+1, &k, r.Requests)
		}
	}
	if len(r.Context) > 0 {
		b.WriteString("\nContext parameters (not grouping keys; they name the session's user and role):\n")
		for _, c := range r.Context {
			fmt.Fprintf(b, "- %s (type %s%s): %s %s, %s; first in %s\n", c.Param.Name, c.Param.Type,
				hashedNote(c.Param.Hashed), place(c.Param), presence(c.Param, c.Requests),
				plural(c.Values, "distinct value"), c.Route)
		}
	}
	if len(r.Demoted) > 0 {
		b.WriteString("\nNot grouping keys (they recur, but are not session identifiers):\n")
		for _, d := range r.Demoted {
			fmt.Fprintf(b, "- %s: %s; in %s, %s\n", d.Place, d.Reason, plural(d.Requests, "request"), plural(d.Values, "distinct value"))
		}
	}
	if len(r.Builtins) > 0 {
		b.WriteString("\nBuilt-in identifiers in this traffic (they group without any parameter):\n")
		for _, bi := range r.Builtins {
			fmt.Fprintf(b, "- %s: %s, %s\n", bi.Name, plural(bi.Requests, "request"), plural(bi.Values, "distinct value"))
		}
	}
	fmt.Fprintf(b, "\n%d of %d requests carry neither a built-in identifier nor a suggested key; they are grouped\nby IP + User-Agent.\n",
		r.FallbackRequests, r.Requests)
	if ps := r.Parameters(); len(ps) > 0 {
		b.WriteString("\nAdd to the configuration file (reorder the grouping keys as you see fit; the first that works decides):\n\n")
		if err := r.WriteYAML(b); err != nil {
			return err
		}
	}
	return b.Flush()
}

func writeKey(b *bufio.Writer, n int, k *Key, total int) {
	names := make([]string, len(k.Members))
	width := 0
	for i, m := range k.Members {
		names[i] = m.Param.Name
		width = max(width, len(m.Param.Name))
	}
	fmt.Fprintf(b, "\n%d. %s (score %.3f)\n", n, strings.Join(names, " → "), k.Score)
	for _, m := range k.Members {
		note := ""
		if m.Builtin {
			note = ", also a built-in identifier"
		}
		fmt.Fprintf(b, "   %-*s  %s (%s%s)\n", width, m.Param.Name, source(m.Param), m.Role, note)
	}
	fmt.Fprintf(b, "   why: %s\n", why(k))
	fmt.Fprintf(b, "   coverage     %.3f  %d of %d requests carry a value seen in at least 2 requests\n", k.Coverage, k.Covered, total)
	fmt.Fprintf(b, "   stability    %.3f  %d of the %d requests where the key works carry their client's main value\n", k.Stability, k.Stayed, k.Works)
	fmt.Fprintf(b, "   follow       %.3f  %d of the %d requests its clients sent from their first use of a value on carry it\n", k.Follow, k.Works, k.Followed)
	if k.Clients > 1 {
		fmt.Fprintf(b, "   distinctness %.3f  %d of %s used by one client only\n", k.Distinctness, k.Values-k.SharedValues, plural(k.Values, "value"))
	} else {
		fmt.Fprintf(b, "   distinctness %.3f  1 client only: whether values differ between clients cannot be judged\n", k.Distinctness)
	}
	fmt.Fprintf(b, "   per client   %d of %s used exactly one value; at most %s for one client\n",
		k.OneValueClients, plural(k.Clients, "client"), plural(k.MaxClientValues, "value"))
	fmt.Fprintf(b, "   lifetime     %.3f  the clients' main values span %s of their %s of traffic\n",
		k.Lifetime, seconds(k.LifeSeconds), seconds(k.ClientSeconds))
	if k.Flow {
		fmt.Fprintf(b, "   evidence     %.3f  a response issues the value before requests send it back\n", k.Evidence)
	} else {
		fmt.Fprintf(b, "   evidence     %.3f  no response is seen issuing the value\n", k.Evidence)
	}
	if k.Rotations > 0 {
		fmt.Fprintf(b, "   rotation     a response replaced the value its request carried %s; each client's values\n"+
			"                are followed as one chain (without that, %d of the %d requests carry their client's\n"+
			"                most used value): keep stitching on (sessions.stitch, where your version has it)\n",
			plural(k.Rotations, "time"), k.StayedUnstitched, k.Works)
	}
	fmt.Fprintf(b, "   values       %s, never shown; exported hashed\n", lengths(k.MinLen, k.MaxLen))
}

// why tells the key's story: where the value is issued and where it comes back, with the
// exchanges each member reads it in and those it decides.
func why(k *Key) string {
	var origins, carriers []string
	for _, m := range k.Members {
		switch m.Role {
		case RoleOrigin:
			origins = append(origins, fmt.Sprintf("by %s in %s (%s, %d deciding)", m.Route, place(m.Param), plural(m.Sent, "response"), m.Decided))
		case RoleCarrier:
			carriers = append(carriers, fmt.Sprintf("%s of %s (%d deciding)", place(m.Param), plural(m.Sent, "request"), m.Decided))
		case RoleStandalone:
			return fmt.Sprintf("sent in %s of %s from %s; no response is seen issuing it", place(m.Param), plural(m.Sent, "request"), plural(k.Clients, "client"))
		}
	}
	if len(carriers) == 0 {
		return "returned " + strings.Join(origins, " and ") + "; later requests send it back in places that never decide"
	}
	return "returned " + strings.Join(origins, " and ") + ", later sent in " + strings.Join(carriers, " and in ")
}

// seconds renders a duration in seconds for the explanations.
func seconds(s float64) string {
	if s == float64(int64(s)) {
		return fmt.Sprintf("%d s", int64(s))
	}
	return fmt.Sprintf("%.1f s", s)
}

// source is the parameter as written in the snippet, on one line.
func source(p config.Parameter) string {
	s := p.In
	if p.Key != "" {
		s += " key " + p.Key
	}
	if p.Decode != "" {
		s += " decode " + p.Decode
	}
	if p.Path != "" {
		s += " path " + p.Path
	}
	return s
}

// place names where a parameter reads its value, in words.
func place(p config.Parameter) string {
	switch p.In {
	case config.InRequestCookie:
		return "the " + p.Key + " cookie"
	case config.InRequestHeader:
		if p.Decode == config.DecodeJWT {
			return "the " + strings.TrimPrefix(p.Path, "$.") + " claim of the bearer JWT"
		}
		return "the " + p.Key + " header"
	case config.InRequestQuery:
		return "the " + p.Key + " query parameter"
	case config.InRequestBody:
		if p.Path != "" {
			return p.Path + " of the request body"
		}
		return "the " + p.Key + " form field"
	case config.InResponseCookie:
		return "the " + p.Key + " cookie it sets"
	case config.InResponseHeader:
		return "the " + p.Key + " response header"
	case config.InResponseBody:
		if p.Path != "" {
			return p.Path + " of the response body"
		}
		return "the " + p.Key + " form field of the response"
	}
	return p.In
}

func presence(p config.Parameter, n int) string {
	if strings.HasPrefix(p.In, "response.") {
		return "in " + plural(n, "response")
	}
	return "in " + plural(n, "request")
}

func hashedNote(h bool) string {
	if h {
		return ", hashed"
	}
	return ""
}

func lengths(lo, hi int) string {
	switch {
	case hi == 0:
		return "longer than 4096 bytes"
	case lo == hi:
		return plural(lo, "byte") + " long"
	}
	return fmt.Sprintf("%d to %d bytes long", lo, hi)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// WriteYAML writes the `parameters:` snippet alone; with nothing to suggest it writes
// "parameters: []", which keeps the built-ins and the fallback.
func (r *Report) WriteYAML(w io.Writer) error {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for i, k := range r.Keys {
		for j, m := range k.Members {
			item := paramNode(m.Param)
			if j == 0 {
				item.HeadComment = fmt.Sprintf("grouping key %d (score %.3f)", i+1, k.Score)
				if k.Rotations > 0 {
					item.HeadComment += fmt.Sprintf("\nits values rotate (%s): stitching follows them as one session;\n"+
						"keep it on (sessions.stitch) where your version of apisessions has it", plural(k.Rotations, "time"))
				}
			}
			seq.Content = append(seq.Content, item)
		}
	}
	for i, c := range r.Context {
		item := paramNode(c.Param)
		if i == 0 {
			item.HeadComment = "context"
		}
		seq.Content = append(seq.Content, item)
	}
	if len(seq.Content) == 0 {
		seq.Style = yaml.FlowStyle
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("parameters"), seq}}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("encode parameters: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode parameters: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func paramNode(p config.Parameter) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v *yaml.Node) { n.Content = append(n.Content, str(k), v) }
	add("name", str(p.Name))
	add("in", str(p.In))
	for _, kv := range [][2]string{{"key", p.Key}, {"decode", p.Decode}, {"path", p.Path}} {
		if kv[1] != "" {
			add(kv[0], str(kv[1]))
		}
	}
	if p.Group {
		add("group", boolean(true))
	}
	if p.Hashed {
		add("hashed", boolean(true))
	}
	if p.Type != "" {
		add("type", str(p.Type))
	}
	return n
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func boolean(b bool) *yaml.Node {
	v := "false"
	if b {
		v = "true"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: v}
}
