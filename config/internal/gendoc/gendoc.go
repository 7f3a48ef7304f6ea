package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/access"
	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/greylist"
	"github.com/portcullis-mail/portcullis/headers"
	"github.com/portcullis-mail/portcullis/rbl"
	"github.com/portcullis-mail/portcullis/spf"
	"github.com/portcullis-mail/portcullis/virus"
)

const modulePath = "github.com/portcullis-mail/portcullis"

// policyConfigs are the types a policy kind's options may decode into, by the name
// config/kinds.go spells them with. A kind whose type is missing here is an error that
// says to add it.
var policyConfigs = map[string]reflect.Type{}

func init() {
	for _, v := range []any{rbl.Config{}, rbl.RHSBLConfig{}, spf.Config{}, dkim.Config{},
		content.Config{}, headers.Config{}, headers.DateConfig{}, bayes.PolicyConfig{}, virus.Config{},
		access.Config{}, greylist.Config{}} {
		t := reflect.TypeOf(v)
		policyConfigs[pkgName(t.PkgPath())+"."+t.Name()] = t
	}
}

// exportedDefaults are the packages' own defaults of a whole struct, for types whose
// zero fields take the values of an exported variable.
var exportedDefaults = map[reflect.Type]reflect.Value{
	reflect.TypeFor[content.Limits]():    reflect.ValueOf(content.DefaultLimits),
	reflect.TypeFor[auth.Argon2Params](): reflect.ValueOf(auth.DefaultArgon2Params),
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[bytesize.Size]()
)

// generate returns docs/config.md for the module at root.
func generate(root string) ([]byte, error) {
	derived, err := derivedDefaults()
	if err != nil {
		return nil, err
	}
	g := &gen{src: &source{root: root, pkgs: map[string]*pkgAST{}}, derived: derived}
	if err := g.server(); err != nil {
		return nil, err
	}
	if err := g.policies(); err != nil {
		return nil, err
	}
	return g.render(), nil
}

type gen struct {
	src      *source
	derived  map[string]string // server keys whose default the loader derives, by path
	server_  []*section
	policy   []*section
	sections *[]*section // where new sections go
}

// section is one table: the keys of one mapping.
type section struct {
	heading string // markdown heading text
	intro   string
	rows    []row
	blocks  []string // defaults too long for a table cell, as YAML
}

type row struct{ key, typ, def, desc string }

func (g *gen) server() error {
	g.sections = &g.server_
	def := reflect.ValueOf(config.Default("./data")).Elem()
	top := &section{heading: "Top level"}
	g.server_ = append(g.server_, top)
	st, _, err := g.src.structType(def.Type())
	if err != nil {
		return err
	}
	return g.fields(top, "", def.Type(), st, def)
}

// policies documents the Config of each kind in config/kinds.go's table.
func (g *gen) policies() error {
	g.sections = &g.policy
	kinds, err := g.src.kinds()
	if err != nil {
		return err
	}
	// Kinds sharing a type share a section, named after all of them.
	var order []string
	byType := map[string][]string{}
	for _, k := range kinds {
		if _, seen := byType[k.typ]; !seen {
			order = append(order, k.typ)
		}
		byType[k.typ] = append(byType[k.typ], k.name)
	}
	for _, typ := range order {
		t, ok := policyConfigs[typ]
		if !ok {
			return fmt.Errorf("config/kinds.go: kind %s decodes into %s, which gendoc does not know: add it to policyConfigs", strings.Join(byType[typ], ", "), typ)
		}
		names := byType[typ]
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = "`" + n + "`"
		}
		st, doc, err := g.src.structType(t)
		if err != nil {
			return err
		}
		sec := &section{heading: "Policy " + strings.Join(quoted, ", "), intro: escape(describe(doc, t.Name(), goKeys(t)))}
		g.policy = append(g.policy, sec)
		if err := g.fields(sec, names[0], t, st, reflect.New(t).Elem()); err != nil {
			return err
		}
	}
	return nil
}

// fields adds the rows of struct t (its AST st, its defaults def) to sec, and a section
// for each nested mapping.
func (g *gen) fields(sec *section, path string, t reflect.Type, st *ast.StructType, def reflect.Value) error {
	def = withDefaults(def)
	keys := goKeys(t)
	docs := fieldDocs(st)
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		fd, ok := docs[f.Name]
		if !ok {
			return fmt.Errorf("%s: no field %s in the source", t, f.Name)
		}
		if opts == "inline" {
			ist, err := g.src.astFor(f.Type, fd.field)
			if err != nil {
				return err
			}
			if err := g.fields(sec, path, f.Type, ist, def.Field(i)); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := join(path, name)
		desc := escape(describe(fd.doc, f.Name, keys))
		r := row{key: name, typ: typeName(f.Type), desc: desc}
		fv := def.Field(i)

		// Nested mappings get a section of their own.
		elem, suffix, list := f.Type, "", ""
		switch {
		case elem.Kind() == reflect.Pointer && elem.Elem().Kind() == reflect.Struct:
			elem = elem.Elem()
			list = "optional mapping"
		case elem.Kind() == reflect.Slice && elem.Elem().Kind() == reflect.Struct:
			elem, suffix, list = elem.Elem(), "[]", "list of mappings"
		case elem.Kind() == reflect.Map && elem.Elem().Kind() == reflect.Struct:
			elem, suffix, list = elem.Elem(), ".NAME", "mapping of names to mappings"
		case elem.Kind() == reflect.Struct && !isLeaf(elem):
			list = "mapping"
		default:
			elem = nil
		}
		if elem != nil {
			sub := key + suffix
			r.typ = fmt.Sprintf("%s, see [`%s`](#%s)", list, sub, anchor(headingFor(sub)))
			if s, _ := value(fv); s != "" && suffix != "" {
				// A list or map of mappings: its default is a whole value.
				r.def = "see below"
				sec.blocks = append(sec.blocks, block(name, fv))
			}
			sec.rows = append(sec.rows, r)
			est, err := g.src.astFor(elem, fd.field)
			if err != nil {
				return err
			}
			nested := &section{heading: headingFor(sub), intro: desc}
			*g.sections = append(*g.sections, nested)
			ev := reflect.New(elem).Elem()
			if elem == f.Type {
				ev = fv
			}
			if err := g.fields(nested, sub, elem, est, ev); err != nil {
				return err
			}
			continue
		}
		if d, ok := g.derived[key]; ok && g.sections == &g.server_ {
			r.def = d
		} else if s, long := value(fv); s != "" && !long {
			r.def = "`" + s + "`"
		} else if s != "" {
			r.def = "see below"
			sec.blocks = append(sec.blocks, block(name, fv))
		} else if f.Type.Kind() != reflect.Map {
			r.def = commentDefault(fd, describe(fd.doc, f.Name, keys), f.Type.Kind() == reflect.Slice)
		}
		sec.rows = append(sec.rows, r)
	}
	return nil
}

func headingFor(path string) string { return "`" + path + "`" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// withDefaults fills the zero fields of def from the package's own defaults: a
// Defaults() method returning the type, or an exported defaults variable.
func withDefaults(def reflect.Value) reflect.Value {
	t := def.Type()
	var full reflect.Value
	if m := def.MethodByName("Defaults"); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 && m.Type().Out(0) == t {
		full = m.Call(nil)[0]
	} else if v, ok := exportedDefaults[t]; ok {
		full = v
	} else {
		return def
	}
	out := reflect.New(t).Elem()
	out.Set(def)
	for i := range t.NumField() {
		if t.Field(i).IsExported() && out.Field(i).IsZero() {
			out.Field(i).Set(full.Field(i))
		}
	}
	return out
}

// isLeaf reports whether a struct type is written as one scalar.
func isLeaf(t reflect.Type) bool { return t == durationType || t == sizeType }

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t == sizeType:
		return "size"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "list of " + plural(typeName(t.Elem()))
	case reflect.Array:
		return fmt.Sprintf("list of %d %s", t.Len(), plural(typeName(t.Elem())))
	case reflect.Map:
		return "mapping of " + plural(typeName(t.Key())) + " to " + plural(typeName(t.Elem()))
	}
	return t.String()
}

func plural(s string) string {
	switch s {
	case "bool":
		return "bools"
	case "integer", "number", "string", "duration", "size":
		return s + "s"
	}
	return s
}

// value renders a default value in YAML flow style; "" for a zero value (no default
// to show), long for one that is better shown as a block.
func value(v reflect.Value) (s string, long bool) {
	if !v.IsValid() || v.IsZero() && v.Kind() != reflect.Bool {
		return "", false
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return "", false
		}
		if k := v.Type().Elem().Kind(); k == reflect.Struct || k == reflect.Map || v.Kind() == reflect.Map {
			return "x", true
		}
	}
	s = flow(v)
	return s, len(s) > 40
}

// flow renders v as YAML flow, leaving out zero fields of structs.
func flow(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return duration(time.Duration(v.Int()))
	case v.Type() == sizeType:
		return bytesize.Size(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "null"
		}
		return flow(v.Elem())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.String:
		return scalar(v.String())
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = flow(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = scalar(k.String()) + ": " + flow(v.MapIndex(k))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	case reflect.Struct:
		var parts []string
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || name == "" || v.Field(i).IsZero() {
				continue
			}
			parts = append(parts, name+": "+flow(v.Field(i)))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return fmt.Sprint(v.Interface())
}

// scalar quotes a string when plain YAML (in a flow collection too) would read it
// otherwise.
func scalar(s string) string {
	switch {
	case s == "", strings.TrimSpace(s) != s,
		strings.ContainsAny(s[:1], "-?:,[]{}#&*!|>'\"%@`"),
		strings.ContainsAny(s, ",[]{}"), strings.Contains(s, ": "), strings.Contains(s, " #"):
		return strconv.Quote(s)
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil || v != s {
		return strconv.Quote(s) // true, null, 12, ...
	}
	return s
}

// duration prints a duration without trailing zero units: 5m, 1h30m, 120h.
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// block renders a long default as a YAML block.
func block(key string, v reflect.Value) string {
	var b strings.Builder
	b.WriteString(key + ":")
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			b.WriteString("\n  - " + flow(v.Index(i)))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			b.WriteString("\n  " + scalar(k.String()) + ": " + flow(v.MapIndex(k)))
		}
	default:
		b.WriteString(" " + flow(v))
	}
	return b.String()
}

// goKeys maps the Go names of t's fields (and of its inlined structs) to their keys.
func goKeys(t reflect.Type) map[string]string {
	keys := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case !f.IsExported() || name == "-":
		case opts == "inline" && f.Type.Kind() == reflect.Struct:
			for k, v := range goKeys(f.Type) {
				keys[k] = v
			}
		case name != "":
			keys[f.Name] = name
		}
	}
	return keys
}

var goIdent = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*\b`)

// leads are the words after which "Name is" or "Name configures" can go: "Hostname is
// our name" reads "Our name".
var leads = []string{"the", "a", "an", "our", "how", "where", "which", "what", "when", "whether", "its", "their", "configures", "names", "sets", "lists"}

// describe turns a doc comment into one line of prose for an admin: lines joined, a
// leading "Name is the" or "Name configures" (Go's habit) reduced to "The" or
// "Configures", and the Go names of the fields replaced by their keys
// ("MaxMessageSize" reads max_message_size).
func describe(doc, name string, keys map[string]string) string {
	s := strings.Join(strings.Fields(doc), " ")
	for _, verb := range []string{" is ", " are ", " "} {
		rest, ok := strings.CutPrefix(s, name+verb)
		if !ok {
			continue
		}
		word, _, _ := strings.Cut(rest, " ")
		if slices.Contains(leads, word) {
			s = strings.ToUpper(rest[:1]) + rest[1:]
			break
		}
	}
	return goIdent.ReplaceAllStringFunc(s, func(w string) string {
		// Acronyms (TLS, DNS) are words of the prose, not field names.
		if k, ok := keys[w]; ok && strings.IndexFunc(w, unicode.IsLower) >= 0 {
			return k
		}
		return w
	})
}

// escape keeps markdown from reading a table cell's text as markup.
func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

var (
	// "[4h]", "[30s, 5m, 10m; RFC 5321]", `["+"]` (not "[smtp.example.net]:587").
	bracketDefault = regexp.MustCompile(`(?:^|[\s.;:])\[([^\[\]]+)\](?:$|[\s.;,)])`)
	// "(default 32MiB)", "(defaults 3 and 12)", "(default: the number of CPUs, ...)".
	parenDefault = regexp.MustCompile(`(?i)\(defaults?:?\s+([^()]*)\)`)
	// "Default true.", "default 10 minutes,", "Default: hostname.", `Default "(&(...))"`.
	wordDefault = regexp.MustCompile(`(?i)\bdefaults?(?: to|:)?\s+("[^"]*"|[^;()]+?)(?:[.;,](?:\s|$)|[()]|$)`)
)

// commentDefault is the default the comment of a field states (doc, with the fields'
// keys for their Go names), "" when it states none. A comment shared by a group of
// fields ("[30s, 5m, 10m]", "(default 500) and ... (default 20)", "(defaults 3 and 12)")
// gives each field its own, or none when it cannot tell which is whose.
func commentDefault(fd fieldDoc, doc string, list bool) string {
	var all []string
	for _, m := range bracketDefault.FindAllStringSubmatch(doc, -1) {
		d, _, _ := strings.Cut(m[1], ";")
		all = append(all, d)
	}
	if all == nil {
		for _, m := range parenDefault.FindAllStringSubmatch(doc, -1) {
			d, _, _ := strings.Cut(m[1], ";")
			d, _, _ = strings.Cut(d, ": ")
			if !list {
				d = firstClause(d)
			}
			all = append(all, d)
		}
	}
	if all == nil {
		for _, m := range wordDefault.FindAllStringSubmatchIndex(doc, -1) {
			if before := strings.ToLower(doc[:m[0]]); strings.HasSuffix(before, "by ") || strings.HasSuffix(before, "no ") {
				continue // "off by default", "no default"
			}
			all = append(all, doc[m[2]:m[3]])
		}
	}
	var d string
	switch {
	case len(all) == 0:
		return ""
	case fd.groupSize > 1 && len(all) == fd.groupSize:
		d = all[fd.groupIndex]
	case fd.groupSize > 1:
		// One default for a group: split "3 and 12", "30s, 5m, 10m" by position.
		parts := strings.Split(strings.ReplaceAll(all[0], " and ", ", "), ", ")
		if len(parts) != fd.groupSize {
			if fd.groupIndex > 0 {
				return ""
			}
			return escape(strings.TrimSpace(all[0]))
		}
		d = parts[fd.groupIndex]
	default:
		d = all[0]
	}
	return escape(strings.TrimSpace(d))
}

// firstClause cuts "64KiB, at most 16MiB" to "64KiB", but keeps "resolv.conf's timeout,
// else 2s" whole.
func firstClause(d string) string {
	head, rest, ok := strings.Cut(d, ", ")
	if !ok || strings.HasPrefix(rest, "else ") || strings.HasPrefix(rest, "or ") {
		return d
	}
	return head
}

// fieldDoc is what the source says about one field.
type fieldDoc struct {
	field      *ast.Field
	doc        string
	groupIndex int // position in a run of fields sharing one comment
	groupSize  int
}

// fieldDocs indexes the fields of st by Go name. A field without a comment of its own
// directly below a commented one that names it shares that comment (Go's habit for a
// group such as "ConnectTimeout, CommandTimeout and DataTimeout bound ...").
func fieldDocs(st *ast.StructType) map[string]fieldDoc {
	out := map[string]fieldDoc{}
	var group []string
	var groupDoc string
	for _, f := range st.Fields.List {
		doc := ""
		if f.Doc != nil {
			doc = f.Doc.Text()
		} else if f.Comment != nil {
			doc = f.Comment.Text()
		}
		var names []string
		for _, n := range f.Names {
			names = append(names, n.Name)
		}
		if len(f.Names) == 0 { // embedded
			names = []string{embeddedName(f.Type)}
		}
		if f.Doc != nil || len(group) == 0 {
			group, groupDoc = nil, doc
		}
		if doc == "" && mentions(groupDoc, names) {
			doc = groupDoc
		} else if f.Doc == nil {
			group, groupDoc = nil, doc
		}
		for _, n := range names {
			group = append(group, n)
			out[n] = fieldDoc{field: f, doc: doc}
		}
		if f.Doc == nil && f.Comment != nil {
			group = nil // a line comment belongs to its own line
		}
		for i, n := range group {
			fd := out[n]
			fd.groupIndex, fd.groupSize = i, len(group)
			out[n] = fd
		}
	}
	return out
}

// mentions reports whether doc names one of names as a word.
func mentions(doc string, names []string) bool {
	for _, w := range goIdent.FindAllString(doc, -1) {
		if slices.Contains(names, w) {
			return true
		}
	}
	return false
}

func embeddedName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return embeddedName(e.X)
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.Ident:
		return e.Name
	}
	return ""
}

// anchor is the id GitHub gives a heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

func (g *gen) render() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("\n## Server config: portcullis.yaml\n\n")
	b.WriteString("`portcullis serve --config portcullis.yaml`; without --config the defaults below apply (see the Quickstart in the README). Keys left out keep their defaults; a key listed replaces its default wholly.\n\n")
	b.WriteString(toc(g.server_))
	for _, s := range g.server_ {
		writeSection(&b, s)
	}
	b.WriteString("\n## Rule file: policies\n\n")
	b.WriteString("The options of each policy instance in the `policies:` section of the rule file (see [rules.md](rules.md)). An instance names its kind with `kind:` or by its first key: `{ spf: { helo: true } }`, `{ kind: spf, helo: true }`; the kinds `rbl`, `dnswl`, `rhsbl`, `header_checks` and `body_checks` take their list or file under the kind's own key: `{ rbl: [zen.spamhaus.org] }`. The instances `content` and `date` exist without configuration.\n\n")
	b.WriteString(toc(g.policy))
	for _, s := range g.policy {
		writeSection(&b, s)
	}
	return b.Bytes()
}

const header = `<!-- Code generated by "go run ./config/internal/gendoc"; DO NOT EDIT. -->

# Configuration reference

Every key of the server config and of the rule file's policies, generated from the config
structs and their comments. Decoding is strict: a key not listed here is an error that names
it and its line. So are a few combinations that would leave a key without effect:
` + "`http.pprof`" + ` without ` + "`http.addr`" + `, ` + "`delivery.delay_warning`" + ` with
` + "`disable_delay_warning`" + `, ` + "`routing.local_users`" + ` with the local transport, a listener's
` + "`proxy_from`" + ` without ` + "`proxy_protocol`" + `, ` + "`group`" + ` without ` + "`user`" + ` and ` + "`allow_root`" + ` with ` + "`user`" + `.

- **size**: a number of bytes, written as an integer (` + "`4096`" + `) or with a unit:
  ` + "`KiB`, `MiB`, `GiB`, `TiB`" + ` (powers of 1024) or ` + "`kB`, `MB`, `GB`, `TB`" + ` (powers of
  1000), with or without a space, in any case (` + "`32MiB`, `64 KiB`, `1.5GiB`" + `). A bare ` + "`K`, `M`" + `
  or ` + "`G`" + ` is refused as ambiguous.
- **duration**: a Go duration with its unit: ` + "`300ms`, `30s`, `5m`, `2h`, `1h30m`" + `. A bare number
  is refused.
- A default in backticks is the value in the code; one in words is what the field's
  comment says, where the code computes it; "—" means none (the description says what an
  empty value does). DATA is ` + "`data_dir`" + `.
`

func toc(ss []*section) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "- [%s](#%s)\n", s.heading, anchor(s.heading))
	}
	return b.String()
}

func writeSection(b *bytes.Buffer, s *section) {
	fmt.Fprintf(b, "\n### %s\n\n", s.heading)
	if s.intro != "" {
		b.WriteString(s.intro + "\n\n")
	}
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	for _, r := range s.rows {
		def := r.def
		if def == "" {
			def = "—"
		}
		desc := r.desc
		if desc == "" {
			desc = "—"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", r.key, r.typ, def, desc)
	}
	for _, bl := range s.blocks {
		fmt.Fprintf(b, "\nDefault:\n\n```yaml\n%s\n```\n", bl)
	}
}

// --- source ---

// source reads the module's Go files for the comments reflection cannot see.
type source struct {
	root string
	pkgs map[string]*pkgAST
	fset token.FileSet
}

type pkgAST struct {
	types map[string]*ast.TypeSpec
	docs  map[string]string
	files []*ast.File
}

func pkgName(path string) string { return path[strings.LastIndex(path, "/")+1:] }

func (s *source) pkg(path string) (*pkgAST, error) {
	if p, ok := s.pkgs[path]; ok {
		return p, nil
	}
	rel, ok := strings.CutPrefix(path, modulePath)
	if !ok {
		return nil, fmt.Errorf("package %s is outside the module", path)
	}
	dir := filepath.Join(s.root, filepath.FromSlash(strings.TrimPrefix(rel, "/")))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	p := &pkgAST{types: map[string]*ast.TypeSpec{}, docs: map[string]string{}}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(&s.fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		p.files = append(p.files, f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				p.types[ts.Name.Name] = ts
				switch {
				case ts.Doc != nil:
					p.docs[ts.Name.Name] = ts.Doc.Text()
				case gd.Doc != nil && len(gd.Specs) == 1:
					p.docs[ts.Name.Name] = gd.Doc.Text()
				}
			}
		}
	}
	s.pkgs[path] = p
	return p, nil
}

// structType returns the declaration of the named struct type t and its doc comment.
func (s *source) structType(t reflect.Type) (*ast.StructType, string, error) {
	p, err := s.pkg(t.PkgPath())
	if err != nil {
		return nil, "", err
	}
	ts, ok := p.types[t.Name()]
	if !ok {
		return nil, "", fmt.Errorf("type %s not found in the source", t)
	}
	st, ok := ts.Type.(*ast.StructType)
	if !ok {
		return nil, "", fmt.Errorf("type %s is not a struct in the source", t)
	}
	return st, p.docs[t.Name()], nil
}

// astFor returns the struct declaration of t: its named type's, or, for an anonymous
// struct, the one written in the field f.
func (s *source) astFor(t reflect.Type, f *ast.Field) (*ast.StructType, error) {
	if t.Name() != "" {
		st, _, err := s.structType(t)
		return st, err
	}
	e := f.Type
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
			continue
		case *ast.ArrayType:
			e = x.Elt
			continue
		case *ast.MapType:
			e = x.Value
			continue
		case *ast.StructType:
			return x, nil
		}
		return nil, fmt.Errorf("no struct declaration for %s", t)
	}
}

// kindEntry is one entry of config/kinds.go's table: a kind and the Config its options
// decode into, as written there ("spf.Config").
type kindEntry struct{ name, typ string }

// kinds reads config/kinds.go's table in source order: for each kind, the first
// PKG.XxxConfig (or PKG.Config) its build function mentions.
func (s *source) kinds() ([]kindEntry, error) {
	p, err := s.pkg(modulePath + "/config")
	if err != nil {
		return nil, err
	}
	funcs := map[string]*ast.FuncDecl{}
	var table *ast.CompositeLit
	for _, f := range p.files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				funcs[d.Name.Name] = d
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if vs, ok := spec.(*ast.ValueSpec); ok && len(vs.Names) == 1 && vs.Names[0].Name == "kinds" && len(vs.Values) == 1 {
						table, _ = vs.Values[0].(*ast.CompositeLit)
					}
				}
			}
		}
	}
	if table == nil {
		return nil, fmt.Errorf("config: no kinds table")
	}
	var out []kindEntry
	for _, e := range table.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		lit, ok := kv.Key.(*ast.BasicLit)
		if !ok {
			continue
		}
		name, err := strconv.Unquote(lit.Value)
		if err != nil {
			return nil, err
		}
		typ := configSelector(kv.Value, funcs)
		if typ == "" {
			return nil, fmt.Errorf("config/kinds.go: kind %q: no PKG.Config type found in its entry or build function", name)
		}
		out = append(out, kindEntry{name, typ})
	}
	// The map literal's order is the file's; keep it, it groups related kinds.
	return out, nil
}

// configSelector finds the first PKG.NameConfig selector in n, following identifiers that
// name functions of the package.
func configSelector(n ast.Node, funcs map[string]*ast.FuncDecl) string {
	var found string
	seen := map[string]bool{}
	var visit func(ast.Node)
	visit = func(n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			if found != "" {
				return false
			}
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && strings.HasSuffix(x.Sel.Name, "Config") {
					found = id.Name + "." + x.Sel.Name
					return false
				}
			case *ast.Ident:
				if fd, ok := funcs[x.Name]; ok && !seen[x.Name] {
					seen[x.Name] = true
					visit(fd.Body)
				}
			}
			return true
		})
	}
	visit(n)
	return found
}

// derivedDefaults finds the server keys whose default the loader derives from hostname or
// data_dir, by loading the config twice with different values of both: a key that
// follows them is documented as "the top-level hostname" or "DATA/...".
func derivedDefaults() (map[string]string, error) {
	load := func(host, data string) (reflect.Value, error) {
		f, err := os.CreateTemp("", "gendoc-*.yaml")
		if err != nil {
			return reflect.Value{}, err
		}
		defer os.Remove(f.Name())
		if _, err := f.WriteString("hostname: " + host + "\n"); err != nil {
			return reflect.Value{}, err
		}
		f.Close()
		c, err := config.Load(f.Name(), data)
		if err != nil {
			return reflect.Value{}, err
		}
		return reflect.ValueOf(c).Elem(), nil
	}
	const h1, h2 = "one.gendoc.invalid", "two.gendoc.invalid"
	d1, d2 := filepath.Join(os.TempDir(), "gendoc-one"), filepath.Join(os.TempDir(), "gendoc-two")
	v1, err := load(h1, d1)
	if err != nil {
		return nil, err
	}
	v2, err := load(h2, d2)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(path string, a, b reflect.Value)
	walk = func(path string, a, b reflect.Value) {
		switch a.Kind() {
		case reflect.Pointer:
			if !a.IsNil() && !b.IsNil() {
				walk(path, a.Elem(), b.Elem())
			}
		case reflect.String:
			x, y := a.String(), b.String()
			switch {
			case path == "hostname" || path == "data_dir":
			case x == h1 && y == h2:
				out[path] = "the top-level `hostname`"
			case strings.HasPrefix(x, d1) && y == d2+strings.TrimPrefix(x, d1):
				out[path] = "`DATA" + filepath.ToSlash(strings.TrimPrefix(x, d1)) + "`"
			}
		case reflect.Struct:
			t := a.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				p := join(path, name)
				if opts == "inline" {
					p = path
				}
				walk(p, a.Field(i), b.Field(i))
			}
		}
	}
	walk("", v1, v2)
	return out, nil
}
