package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Checklist is an official checklist document (docs/AIConformance-X.Y.yaml)
// or a PRODUCT.yaml filled in from one. Metadata and Spec keep the order of
// the document. The parsed document itself is kept too, so Marshal writes
// back comments, quoting and any field kaic does not model, changing only
// what was edited.
type Checklist struct {
	Metadata []MetadataField
	Spec     []ChecklistCategory

	doc *yaml.Node
}

// MetadataField is one key of the metadata section, e.g. platformName.
type MetadataField struct {
	Key, Value string
	// Tag is the YAML tag of the value as written (!!str, !!float, !!null…):
	// 2.4 unquoted is a number, not a string.
	Tag string
}

// ChecklistCategory is one category of the spec section with its items.
type ChecklistCategory struct {
	Name  string // e.g. "accelerators"
	Items []ChecklistItem
}

// ChecklistItem is one requirement entry of a checklist.
type ChecklistItem struct {
	ID          string
	Description string
	Level       Level
	// Status is "", "Implemented", "Not Implemented", "Partially
	// Implemented" or "N/A".
	Status   string
	Evidence []string
	Notes    string
}

// item field keys in the order the official checklists use.
const (
	keyID          = "id"
	keyDescription = "description"
	keyLevel       = "level"
	keyStatus      = "status"
	keyEvidence    = "evidence"
	keyNotes       = "notes"
)

var itemKeys = []string{keyID, keyDescription, keyLevel, keyStatus, keyEvidence, keyNotes}

// ParseChecklist parses a checklist document. It requires a mapping with a
// spec section of categories holding lists of items, each with a unique
// non-empty id; metadata values must be scalars. Aliases are refused.
func ParseChecklist(data []byte) (*Checklist, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing checklist: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, errors.New("parsing checklist: empty document")
	}
	if err := rejectAliases(&doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("checklist line %d: want a mapping at the top level", root.Line)
	}
	if err := uniqueKeys(root, ""); err != nil {
		return nil, err
	}
	cl := &Checklist{doc: &doc}
	var spec *yaml.Node
	for k, v := range pairs(root) {
		switch k.Value {
		case "metadata":
			md, err := parseMetadata(v)
			if err != nil {
				return nil, err
			}
			cl.Metadata = md
		case "spec":
			spec = v
		}
	}
	if spec == nil {
		return nil, errors.New("checklist: no spec section")
	}
	cats, err := parseSpec(spec)
	if err != nil {
		return nil, err
	}
	cl.Spec = cats
	return cl, nil
}

func parseMetadata(n *yaml.Node) ([]MetadataField, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("checklist line %d: metadata: want a mapping", n.Line)
	}
	if err := uniqueKeys(n, "metadata."); err != nil {
		return nil, err
	}
	var md []MetadataField
	for k, v := range pairs(n) {
		if k.Value == "" {
			return nil, fmt.Errorf("checklist line %d: empty metadata key", k.Line)
		}
		s, err := scalar(v, "metadata."+k.Value)
		if err != nil {
			return nil, err
		}
		md = append(md, MetadataField{Key: k.Value, Value: s, Tag: v.ShortTag()})
	}
	return md, nil
}

func parseSpec(n *yaml.Node) ([]ChecklistCategory, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("checklist line %d: spec: want a mapping of categories", n.Line)
	}
	if err := uniqueKeys(n, "spec."); err != nil {
		return nil, err
	}
	seen := map[string]string{}
	var cats []ChecklistCategory
	for k, v := range pairs(n) {
		path := "spec." + k.Value
		if k.Value == "" {
			return nil, fmt.Errorf("checklist line %d: empty category name", k.Line)
		}
		cat := ChecklistCategory{Name: k.Value}
		if !isNull(v) && v.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("checklist line %d: %s: want a list of requirements", v.Line, path)
		}
		for i, itemNode := range v.Content {
			item, err := parseItem(itemNode, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if other, dup := seen[item.ID]; dup {
				return nil, fmt.Errorf("checklist line %d: id %q appears twice (also in %s)", itemNode.Line, item.ID, other)
			}
			seen[item.ID] = cat.Name
			cat.Items = append(cat.Items, item)
		}
		cats = append(cats, cat)
	}
	return cats, nil
}

func parseItem(n *yaml.Node, path string) (ChecklistItem, error) {
	var item ChecklistItem
	if n.Kind != yaml.MappingNode {
		return item, fmt.Errorf("checklist line %d: %s: want a mapping", n.Line, path)
	}
	if err := uniqueKeys(n, path+"."); err != nil {
		return item, err
	}
	for k, v := range pairs(n) {
		field := path + "." + k.Value
		var err error
		switch k.Value {
		case keyID:
			item.ID, err = scalar(v, field)
		case keyDescription:
			item.Description, err = scalar(v, field)
		case keyLevel:
			var s string
			s, err = scalar(v, field)
			item.Level = Level(s)
		case keyStatus:
			item.Status, err = scalar(v, field)
		case keyNotes:
			item.Notes, err = scalar(v, field)
		case keyEvidence:
			item.Evidence, err = stringList(v, field)
		}
		if err != nil {
			return item, err
		}
	}
	if item.ID == "" {
		return item, fmt.Errorf("checklist line %d: %s: no id", n.Line, path)
	}
	return item, nil
}

// Item returns the item with the given id, for reading or editing in place.
func (c *Checklist) Item(id string) *ChecklistItem {
	for i := range c.Spec {
		for j := range c.Spec[i].Items {
			if c.Spec[i].Items[j].ID == id {
				return &c.Spec[i].Items[j]
			}
		}
	}
	return nil
}

// Meta returns the value of a metadata key.
func (c *Checklist) Meta(key string) (string, bool) {
	for _, f := range c.Metadata {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// SetMeta sets a metadata key, appending it if absent.
func (c *Checklist) SetMeta(key, value string) {
	for i := range c.Metadata {
		if c.Metadata[i].Key == key {
			c.Metadata[i].Value, c.Metadata[i].Tag = value, "!!str"
			return
		}
	}
	c.Metadata = append(c.Metadata, MetadataField{Key: key, Value: value, Tag: "!!str"})
}

// Marshal writes the checklist as YAML. For a parsed checklist, everything
// that was not changed through Metadata and Spec is written as it was read,
// comments included; new keys and items are added in checklist order.
func (c *Checklist) Marshal() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	var doc *yaml.Node
	if c.doc != nil {
		doc = copyNode(c.doc)
	} else {
		doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	root := doc.Content[0]

	var content []*yaml.Node
	var haveMeta, haveSpec bool
	for k, v := range pairs(root) {
		switch k.Value {
		case "metadata":
			haveMeta = true
			v = c.metadataNode(v)
		case "spec":
			if !haveMeta && len(c.Metadata) > 0 {
				haveMeta = true
				content = append(content, strNode("metadata"), c.metadataNode(nil))
			}
			haveSpec = true
			v = c.specNode(v)
		}
		content = append(content, k, v)
	}
	if !haveMeta && len(c.Metadata) > 0 {
		content = append(content, strNode("metadata"), c.metadataNode(nil))
	}
	if !haveSpec {
		content = append(content, strNode("spec"), c.specNode(nil))
	}
	root.Content = content
	spellNullsInFlow(doc, false)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("writing checklist: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing checklist: %w", err)
	}
	return buf.Bytes(), nil
}

// validate checks what Marshal relies on: named categories and unique,
// non-empty ids and keys.
func (c *Checklist) validate() error {
	keys := map[string]bool{}
	for _, f := range c.Metadata {
		if f.Key == "" || keys[f.Key] {
			return fmt.Errorf("checklist: metadata key %q is empty or repeated", f.Key)
		}
		keys[f.Key] = true
	}
	cats, ids := map[string]bool{}, map[string]bool{}
	for _, cat := range c.Spec {
		if cat.Name == "" || cats[cat.Name] {
			return fmt.Errorf("checklist: category %q is empty or repeated", cat.Name)
		}
		cats[cat.Name] = true
		for _, item := range cat.Items {
			if item.ID == "" || ids[item.ID] {
				return fmt.Errorf("checklist: requirement id %q is empty or repeated", item.ID)
			}
			ids[item.ID] = true
		}
	}
	return nil
}

// metadataNode rebuilds the metadata mapping from c.Metadata, reusing the
// nodes of orig (which may be nil) for keys that are still present.
func (c *Checklist) metadataNode(orig *yaml.Node) *yaml.Node {
	if len(c.Metadata) == 0 && orig != nil && isNull(orig) {
		return orig
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if orig != nil && orig.Kind == yaml.MappingNode {
		copied := *orig
		out = &copied
		out.Content = nil
	}
	for _, f := range c.Metadata {
		k, v := lookup(orig, f.Key)
		if k == nil {
			k, v = strNode(f.Key), &yaml.Node{}
		}
		setScalar(v, f.Value)
		out.Content = append(out.Content, k, v)
	}
	return out
}

// specNode rebuilds the spec mapping from c.Spec, reusing the nodes of the
// original document for categories and items that are still present, so
// unknown item fields and comments survive.
func (c *Checklist) specNode(orig *yaml.Node) *yaml.Node {
	if len(c.Spec) == 0 && orig != nil && isNull(orig) {
		return orig
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	origItems := map[string]*yaml.Node{}
	if orig != nil && orig.Kind == yaml.MappingNode {
		copied := *orig
		out = &copied
		out.Content = nil
		for _, seq := range pairs(orig) {
			if seq.Kind != yaml.SequenceNode {
				continue
			}
			for _, item := range seq.Content {
				if _, id := lookup(item, keyID); id != nil {
					origItems[id.Value] = item
				}
			}
		}
	}
	for _, cat := range c.Spec {
		k, seq := lookup(orig, cat.Name)
		if k == nil {
			k = strNode(cat.Name)
		}
		if len(cat.Items) == 0 && seq != nil && isNull(seq) {
			out.Content = append(out.Content, k, seq)
			continue
		}
		if seq == nil || seq.Kind != yaml.SequenceNode {
			seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		}
		items := make([]*yaml.Node, 0, len(cat.Items))
		for _, item := range cat.Items {
			items = append(items, itemNode(origItems[item.ID], item))
		}
		seq.Content = items
		seq.Style = seq.Style &^ yaml.FlowStyle
		if len(items) == 0 {
			seq.Style |= yaml.FlowStyle
		}
		out.Content = append(out.Content, k, seq)
	}
	return out
}

// itemNode writes item into orig (an item mapping of the original document,
// or nil for a new item).
func itemNode(orig *yaml.Node, item ChecklistItem) *yaml.Node {
	isNew := orig == nil || orig.Kind != yaml.MappingNode
	if isNew {
		orig = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	values := map[string]string{
		keyID:          item.ID,
		keyDescription: item.Description,
		keyLevel:       string(item.Level),
		keyStatus:      item.Status,
		keyNotes:       item.Notes,
	}
	for _, key := range itemKeys {
		_, v := lookup(orig, key)
		zero := values[key] == "" && (key != keyEvidence || len(item.Evidence) == 0)
		if v == nil {
			if !isNew && zero {
				continue // keep a document that lacked the field as it was
			}
			v = &yaml.Node{}
			orig.Content = append(orig.Content, strNode(key), v)
		}
		if key == keyEvidence {
			setList(v, item.Evidence)
		} else {
			setScalar(v, values[key])
		}
	}
	return orig
}

// setScalar makes n a string scalar holding value, leaving it untouched
// when it already does so that quoting and comments are kept.
func setScalar(n *yaml.Node, value string) {
	if n.Kind == yaml.ScalarNode {
		if cur, err := scalar(n, ""); err == nil && cur == value {
			return
		}
	}
	style := n.Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle)
	if n.Kind != yaml.ScalarNode {
		style = yaml.DoubleQuotedStyle
		n.Content = nil
	}
	n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", value, style
}

// setList makes n a sequence of strings, in block style unless empty.
func setList(n *yaml.Node, values []string) {
	if len(values) == 0 && n.Kind != 0 && isNull(n) {
		return // an empty value stays as written
	}
	if n.Kind == yaml.SequenceNode {
		if cur, err := stringList(n, ""); err == nil && slices.Equal(cur, values) {
			return
		}
	}
	n.Kind, n.Tag, n.Value = yaml.SequenceNode, "!!seq", ""
	n.Content = make([]*yaml.Node, len(values))
	for i, s := range values {
		n.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
	}
	n.Style = 0
	if len(values) == 0 {
		n.Style = yaml.FlowStyle
	}
}

// pairs iterates over the key and value nodes of a mapping.
func pairs(n *yaml.Node) func(yield func(k, v *yaml.Node) bool) {
	return func(yield func(k, v *yaml.Node) bool) {
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !yield(n.Content[i], n.Content[i+1]) {
				return
			}
		}
	}
}

// lookup returns the key and value nodes of key in mapping n.
func lookup(n *yaml.Node, key string) (k, v *yaml.Node) {
	for k, v := range pairs(n) {
		if k.Value == key {
			return k, v
		}
	}
	return nil, nil
}

// uniqueKeys requires scalar, distinct keys in mapping n.
func uniqueKeys(n *yaml.Node, prefix string) error {
	seen := map[string]bool{}
	for k := range pairs(n) {
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("checklist line %d: %s: keys must be strings", k.Line, prefix)
		}
		if seen[k.Value] {
			return fmt.Errorf("checklist line %d: duplicate key %s%s", k.Line, prefix, k.Value)
		}
		seen[k.Value] = true
	}
	return nil
}

// scalar returns the string value of a scalar node; null is "".
func scalar(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("checklist line %d: %s: want a string", n.Line, path)
	}
	if n.Tag == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

func stringList(n *yaml.Node, path string) ([]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("checklist line %d: %s: want a list", n.Line, path)
	}
	out := make([]string, 0, len(n.Content))
	for i, e := range n.Content {
		s, err := scalar(e, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func rejectAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("checklist line %d: aliases are not supported", n.Line)
	}
	for _, c := range n.Content {
		if err := rejectAliases(c); err != nil {
			return err
		}
	}
	return nil
}

// spellNullsInFlow writes empty nulls inside flow collections as "null":
// the encoder would otherwise print them as an empty quoted string, which
// reads back as a string.
func spellNullsInFlow(n *yaml.Node, inFlow bool) {
	inFlow = inFlow || n.Style&yaml.FlowStyle != 0
	if inFlow && n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == "" {
		n.Value = "null"
	}
	for _, c := range n.Content {
		spellNullsInFlow(c, inFlow)
	}
}

func copyNode(n *yaml.Node) *yaml.Node {
	c := *n
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, child := range n.Content {
			c.Content[i] = copyNode(child)
		}
	}
	return &c
}
