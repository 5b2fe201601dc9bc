package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// FieldError is one configuration problem. Its text names the file, the line
// when known, and the key path; it never quotes a configured value.
type FieldError struct {
	File string // the configuration file, "" when parsed from memory
	Line int    // 1-based, 0 when unknown (e.g. a missing key)
	Path string // key path, "servicenow.oauth.client_id"; "" for file-level problems
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Size limits: a *_file holds a credential and the configuration a few
// kilobytes of YAML, not a disk image.
const (
	maxSecretFile = 64 << 10
	maxConfigFile = 1 << 20
)

var (
	secretType   = reflect.TypeOf(secret.Secret{})
	durationType = reflect.TypeOf(time.Duration(0))
)

type decoder struct {
	file    string
	lookup  func(string) (string, bool)
	errs    []*FieldError // structural problems
	envErrs []*FieldError // unset or malformed ${VAR}; dropped for disabled sources
	lines   map[string]int
	seen    map[*yaml.Node]bool // scalars already expanded (aliases share nodes)
	envNode map[*yaml.Node]bool // scalars that took a value from ${VAR}
	fromEnv map[string]bool     // key paths whose value took one from ${VAR}
	failed  map[string]bool     // paths that already have an error
	// visits counts the values walk examines and the keys mapping examines,
	// once more each time an alias or merge leads back to them; budget is
	// where that stops (see maxExpansions), and exhausted reports that it
	// did.
	visits, budget int
	exhausted      bool
}

// maxExpansions bounds how many nodes aliases and merge keys (<<) may expand
// to, beyond the nodes written out in the file. Each alias is walked again
// wherever it is used, so nested merges ("&b {<<: [*a, *a]}", "&c {<<: [*b,
// *b]}", ...) double the work at every level; a real configuration expands
// to a few dozen nodes.
const maxExpansions = 10000

func (d *decoder) fail(line int, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
	if path != "" {
		d.failed[path] = true
	}
}

func parse(data []byte, filename string, lookup func(string) (string, bool), conns []source.Connector) (*Config, error) {
	d := &decoder{
		file:    filename,
		lookup:  lookup,
		lines:   map[string]int{},
		seen:    map[*yaml.Node]bool{},
		envNode: map[*yaml.Node]bool{},
		fromEnv: map[string]bool{},
		failed:  map[string]bool{},
	}
	cfg := &Config{file: filename, lines: d.lines, fromEnv: d.fromEnv, sources: newSources(conns)}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{File: filename, Msg: "the configuration is empty"}
		}
		return nil, d.syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.syntaxError(err)
	default:
		return nil, &FieldError{File: filename, Line: extra.Line, Msg: "only one YAML document is allowed (remove the second \"---\")"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, &FieldError{File: filename, Msg: "the configuration is empty"}
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, &FieldError{File: filename, Msg: "the configuration is empty"}
	}

	d.budget = countNodes(root) + maxExpansions
	ft := fileType(cfg.sources)
	d.walk(root, ft, "", 0)
	if d.exhausted {
		// Everything else found is noise from the same expansion, and
		// yaml's own decoder would repeat it.
		return nil, &FieldError{File: filename, Msg: fmt.Sprintf(
			"too many aliases/merges expanded (limit %d): every alias and merge key (<<) expands its anchor again, so nested anchors multiply; write the values out or use fewer levels of anchors", maxExpansions)}
	}
	fv := reflect.New(ft)
	if err := root.Decode(fv.Interface()); err != nil {
		d.decodeError(err)
	}
	cfg.fromFileValue(fv.Elem())

	// Unset variables only matter in sections that are in use: a shared config
	// may name ${JIRA_API_TOKEN} while this deployment runs ServiceNow only.
envErrs:
	for _, e := range d.envErrs {
		for _, s := range cfg.sources {
			if !s.Enabled() && inSection(e.Path, s.Name()) {
				continue envErrs
			}
		}
		d.errs = append(d.errs, e)
		d.failed[e.Path] = true
	}

	d.readSecretFiles(cfg, filepath.Dir(filename))
	d.checkIdentityTokenFile(cfg, filepath.Dir(filename))
	cfg.ApplyDefaults()

	errs := make([]error, 0, len(d.errs))
	for _, e := range d.errs {
		errs = append(errs, e)
	}
	for _, e := range cfg.problems() {
		if !d.failed[e.Path] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func inSection(path, section string) bool {
	return strings.HasPrefix(path, section+".") && path != section+".enabled"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError rewrites "yaml: line 3: ..." into "config.yaml:3: ...".
func (d *decoder) syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: d.file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &FieldError{File: d.file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

var (
	typeErrLine = regexp.MustCompile(`^line (\d+): (.*)$`)
	quoted      = regexp.MustCompile("`[^`]*`")
)

// decodeError reports what yaml's decoder still rejects after walk. walk
// checks every type first, so this is rare; the value yaml quotes is removed.
func (d *decoder) decodeError(err error) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		d.fail(0, "", "%s", quoted.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "a value"))
		return
	}
	for _, e := range te.Errors {
		line := 0
		if m := typeErrLine.FindStringSubmatch(e); m != nil {
			line, _ = strconv.Atoi(m[1])
			e = m[2]
		}
		d.fail(line, "", "%s", quoted.ReplaceAllString(e, "a value"))
	}
}

// walk checks n against the Go type t: known keys only, no repeats, and the
// right kind and syntax for every value; it expands ${VAR} in scalars and
// normalises them so that yaml's decoder accepts them as checked.
func (d *decoder) walk(n *yaml.Node, t reflect.Type, path string, line int) {
	if !d.visit() {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(n.Line, path, "refers to an unknown anchor")
			return
		}
		n = n.Alias
	}
	if line == 0 {
		line = n.Line
	}
	if path != "" {
		if _, ok := d.lines[path]; !ok {
			d.lines[path] = line
		}
	}
	if isNull(n) {
		return
	}

	switch {
	case t == secretType || t.Kind() == reflect.String:
		if d.scalar(n, path, line) {
			n.Tag, n.Style = "!!str", yaml.DoubleQuotedStyle
		}
	case t == durationType:
		if !d.scalar(n, path, line) {
			return
		}
		if _, err := time.ParseDuration(strings.TrimSpace(n.Value)); err != nil {
			d.fail(line, path, "must be a duration with a unit, such as 30s, 5m or 1h")
			d.nullify(n)
			return
		}
		n.Value, n.Tag, n.Style = strings.TrimSpace(n.Value), "!!str", yaml.DoubleQuotedStyle
	case t.Kind() == reflect.Int:
		if !d.scalar(n, path, line) {
			return
		}
		v, err := strconv.Atoi(strings.TrimSpace(n.Value))
		if err != nil {
			d.fail(line, path, "must be a whole number")
			d.nullify(n)
			return
		}
		n.Value, n.Tag, n.Style = strconv.Itoa(v), "!!int", 0
	case t.Kind() == reflect.Float64:
		if !d.scalar(n, path, line) {
			return
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			d.fail(line, path, "must be a number, such as 10 or 0.5")
			d.nullify(n)
			return
		}
		n.Value, n.Tag, n.Style = strconv.FormatFloat(v, 'g', -1, 64), "!!float", 0
	case t.Kind() == reflect.Bool:
		if !d.scalar(n, path, line) {
			return
		}
		switch strings.ToLower(strings.TrimSpace(n.Value)) {
		case "true":
			n.Value = "true"
		case "false":
			n.Value = "false"
		default:
			d.fail(line, path, "must be true or false")
			d.nullify(n)
			return
		}
		n.Tag, n.Style = "!!bool", 0
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(line, path, "must be a list, such as [team, environment]")
			d.nullify(n)
			return
		}
		for i, c := range n.Content {
			d.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), c.Line)
		}
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		// Free keys (policy rule fields: environment, team, …): any name, each
		// value checked against the element type.
		if n.Kind != yaml.MappingNode {
			d.fail(line, path, "must be a section of keys, such as { environment: [dev] }")
			d.nullify(n)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !d.visit() {
				return
			}
			k, v := n.Content[i], n.Content[i+1]
			d.walk(v, t.Elem(), path+"."+k.Value, v.Line)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(line, path, "must be a section of keys, not a single value or a list")
			d.nullify(n)
			return
		}
		d.mapping(n, t, path, map[string]int{})
	default:
		panic("config: no rule for " + t.String())
	}
}

// mapping checks a mapping's keys against struct type t. seen maps the keys
// already given to their line, to reject repeats.
func (d *decoder) mapping(n *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	fields := yamlFields(t)
	var merges []*yaml.Node
	var drop map[int]bool // repeated keys, removed so they are reported once
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.visit() {
			return
		}
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && (k.ShortTag() == "!!merge" || k.Value == "<<") && k.Style == 0 {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			d.fail(k.Line, path, "keys must be plain names")
			continue
		}
		name := k.Value
		ft, ok := fields[name]
		if !ok {
			d.fail(k.Line, "", "%s", unknownKey(name, path, fields))
			d.nullify(v)
			continue
		}
		p := join(path, name)
		if first, dup := seen[name]; dup {
			d.fail(k.Line, p, "given twice (first at line %d)", first)
			if drop == nil {
				drop = map[int]bool{}
			}
			drop[i] = true
			continue
		}
		seen[name] = k.Line
		d.walk(v, ft, p, k.Line)
	}
	if drop != nil {
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !drop[i] {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
	// Merged mappings (<<: *anchor) provide keys not given directly.
	for _, m := range merges {
		if !d.visit() {
			return
		}
		if m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		switch m.Kind {
		case yaml.MappingNode:
			d.mergeInto(m, t, path, seen)
		case yaml.SequenceNode:
			for _, c := range m.Content {
				if !d.visit() {
					return
				}
				if c.Kind == yaml.AliasNode && c.Alias != nil {
					c = c.Alias
				}
				if c.Kind != yaml.MappingNode {
					d.fail(c.Line, path, "<< must merge a mapping")
					continue
				}
				d.mergeInto(c, t, path, seen)
			}
		default:
			d.fail(m.Line, path, "<< must merge a mapping")
		}
	}
}

// visit counts one node examined and reports whether the budget allows it.
func (d *decoder) visit() bool {
	d.visits++
	if d.visits > d.budget {
		d.exhausted = true
	}
	return !d.exhausted
}

// countNodes counts the nodes written out under n, without following
// aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

func (d *decoder) mergeInto(m *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	// Keys given directly win over merged ones, as in YAML; only check the
	// merged keys that are not overridden.
	own := map[string]int{}
	for k, v := range seen {
		own[k] = v
	}
	sub := &yaml.Node{Kind: yaml.MappingNode, Line: m.Line}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if _, overridden := own[m.Content[i].Value]; overridden {
			continue
		}
		sub.Content = append(sub.Content, m.Content[i], m.Content[i+1])
	}
	d.mapping(sub, t, path, own)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// scalar checks that n is a single value and expands ${VAR} in it. It reports
// false, with the node nulled, when n cannot be used.
func (d *decoder) scalar(n *yaml.Node, path string, line int) bool {
	if n.Kind != yaml.ScalarNode {
		d.fail(line, path, "must be a single value, not a list or a section")
		d.nullify(n)
		return false
	}
	if d.seen[n] {
		if d.envNode[n] {
			d.fromEnv[path] = true
		}
		return true
	}
	d.seen[n] = true
	if !strings.Contains(n.Value, "$") {
		return true
	}
	v, err := expand(n.Value, func(name string) (string, bool) {
		// Remembered so that a secret given as ${VAR} is not taken for one
		// written in the file (PermissionWarnings).
		d.envNode[n], d.fromEnv[path] = true, true
		return d.lookup(name)
	})
	if err != nil {
		d.envErrs = append(d.envErrs, &FieldError{File: d.file, Line: line, Path: path, Msg: err.Error()})
		d.nullify(n)
		return false
	}
	// An expanded value is always text: an environment value cannot turn
	// into a list, a mapping or a null.
	n.Value, n.Tag, n.Style = v, "!!str", yaml.DoubleQuotedStyle
	return true
}

// nullify makes yaml's decoder skip n, so one problem is reported once.
func (d *decoder) nullify(n *yaml.Node) {
	n.Kind, n.Tag, n.Value, n.Style, n.Content, n.Alias = yaml.ScalarNode, "!!null", "", 0, nil, nil
}

// expand replaces ${NAME} with the environment variable NAME. "$$" is a
// literal "$" (so "$${X}" is the text "${X}"); any other "$" is kept.
// Errors name the variable but never the value.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`"${" has no closing "}" (write "$${" for a literal "${")`)
			}
			name := s[i+2 : i+2+end]
			if !envName.MatchString(name) {
				return "", errors.New(`"${...}" must hold an environment variable name of letters, digits and "_" (write "$${" for a literal "${")`)
			}
			v, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// keyLike matches what every configuration key looks like.
var keyLike = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// yamlFields maps a struct's yaml key names to field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func unknownKey(name, path string, fields map[string]reflect.Type) string {
	where := "in " + path
	if path == "" {
		where = "at the top level"
	}
	s := closest(name, fields)
	if s == "" && !keyLike.MatchString(name) {
		// Not shaped like any key: most likely a value that lost its
		// indentation, which must not be echoed.
		return fmt.Sprintf("unknown key %s (not shown: it does not look like a key name; check the indentation)", where)
	}
	msg := fmt.Sprintf("unknown key %q %s", name, where)
	if s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		known := make([]string, 0, len(fields))
		for k := range fields {
			known = append(known, k)
		}
		sort.Strings(known)
		msg += " (known keys: " + strings.Join(known, ", ") + ")"
	}
	return msg
}

// closest returns the known key nearest to name, if it is near enough to be a
// typo.
func closest(name string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lname := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	for _, k := range keys {
		if lname == k {
			return k
		}
		if dist := levenshtein(lname, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
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
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// secretRef is one secret key and its *_file twin.
type secretRef struct {
	path string // "servicenow.password"
	val  *secret.Secret
	file *string
}

func (c *Config) secretRefs() []secretRef {
	refs := []secretRef{
		{"chainguard.token", &c.Chainguard.Token, &c.Chainguard.TokenFile},
	}
	for _, s := range c.sources {
		if s.Enabled() {
			refs = append(refs, sectionRefs(s.Name(), s.Section)...)
		}
	}
	return refs
}

// sectionRefs returns the secret keys of the section of source name.
func sectionRefs(name string, sec source.Section) []secretRef {
	var refs []secretRef
	for _, r := range sec.Secrets() {
		refs = append(refs, secretRef{name + "." + r.Key, r.Value, r.File})
	}
	return refs
}

// readSecretFiles loads every *_file twin into its secret key.
func (d *decoder) readSecretFiles(c *Config, base string) {
	for _, r := range c.secretRefs() {
		if *r.file == "" {
			continue
		}
		fileKey := r.path + "_file"
		line := d.lines[fileKey]
		if !r.val.IsZero() {
			if l := d.lines[r.path]; l > line {
				line = l
			}
			d.fail(line, r.path, "set either %s or %s, not both", r.path, fileKey)
			d.failed[fileKey] = true
			continue
		}
		p := resolve(*r.file, base)
		v, err := readSecretFile(p)
		if err != nil {
			d.fail(line, fileKey, "%v", err)
			d.failed[r.path] = true
			continue
		}
		// Keep the resolved path: chainguard.token_file is read again
		// while the bridge runs, from whatever directory it runs in.
		*r.file = p
		*r.val = secret.New(v)
		if c.fromFile == nil {
			c.fromFile = map[string]bool{}
		}
		c.fromFile[r.path] = true
	}
}

// resolve makes a relative path relative to base, the configuration's
// directory.
func resolve(p, base string) string {
	if !filepath.IsAbs(p) && base != "" {
		return filepath.Join(base, p)
	}
	return p
}

// checkIdentityTokenFile resolves chainguard.identity_token_file and checks
// that it can be read now. The token itself is not kept: it is short-lived
// and the bridge reads the file again at each exchange.
func (d *decoder) checkIdentityTokenFile(c *Config, base string) {
	cg := &c.Chainguard
	if cg.IdentityTokenFile == "" {
		return
	}
	cg.IdentityTokenFile = resolve(cg.IdentityTokenFile, base)
	if _, err := readSecretFile(cg.IdentityTokenFile); err != nil {
		const key = "chainguard.identity_token_file"
		d.fail(d.lines[key], key, "%v", err)
	}
}

// readSecretFile reads a credential file, trimming one trailing newline.
// Errors name the path and the reason, never the contents.
func readSecretFile(p string) (string, error) {
	data, err := readRegular(p, maxSecretFile)
	var big *tooLargeError
	switch {
	case errors.As(err, &big):
		return "", fmt.Errorf("%s is larger than %d KiB; is it the right file?", p, maxSecretFile>>10)
	case err != nil:
		return "", fmt.Errorf("cannot read %s: %v", p, reason(err))
	}
	s := string(data)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	if s == "" {
		return "", fmt.Errorf("%s is empty", p)
	}
	return s, nil
}

// tooLargeError: a file holds more than the limit readRegular was given.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("larger than %d bytes", e.limit)
}

// readRegular reads at most limit bytes of the regular file at p, following
// symbolic links (Kubernetes mounts secrets through them). Anything else is
// refused before it is opened: reading a device such as /dev/zero never ends,
// and opening a FIFO waits for a writer that may never come. The file is
// opened without blocking and checked again, in case it was replaced in
// between.
func readRegular(p string, limit int64) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(p, st); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err = f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkRegular(p, st); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{limit: limit}
	}
	return data, nil
}

// checkRegular refuses anything but a regular file, saying what it is.
func checkRegular(p string, st fs.FileInfo) error {
	m := st.Mode()
	var what string
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		what = "it is a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "it is a named pipe (FIFO), not a regular file"
	case m&fs.ModeSocket != 0:
		what = "it is a socket, not a regular file"
	case m&fs.ModeDevice != 0:
		what = "it is a device, not a regular file"
	default:
		what = "it is not a regular file"
	}
	return &fs.PathError{Op: "read", Path: p, Err: errors.New(what)}
}

// reason strips the path from an fs error, which the caller already names.
func reason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
