package compose

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v4"
)

// checkLabels refuses labels (of services, networks and volumes) whose
// value interpolates a variable that comes from an encrypted file: labels
// are readable by anyone who can list containers, and are shown by
// `docker inspect` and `docker ps --format`. The check is on the
// references in the compose files, not on the values, so a label that
// happens to spell a decrypted value literally (already in git, in clear)
// is not refused.
func (k *keyring) checkLabels(src *sources) error {
	if len(k.secretVars) == 0 {
		return nil
	}
	names := sortedKeys(k.secretVars)
	var refs []*regexp.Regexp
	for _, name := range names {
		refs = append(refs, variableRef(name))
	}
	for _, f := range src.files {
		for _, doc := range f.docs {
			root := docRoot(doc)
			for _, kind := range []string{"services", "networks", "volumes"} {
				objs := deref(mapValue(root, kind))
				if objs == nil || objs.Kind != yaml.MappingNode {
					continue
				}
				for i := 0; i+1 < len(objs.Content); i += 2 {
					obj := objs.Content[i].Value
					for _, l := range labelValues(mapValue(deref(objs.Content[i+1]), "labels")) {
						for j, re := range refs {
							if !re.MatchString(l.value.Value) {
								continue
							}
							le := &LoadError{File: f.rel, Line: l.value.Line, Key: kind + "." + obj + ".labels",
								Msg: fmt.Sprintf("label %q uses %s, which comes from the encrypted file %s; labels are readable by anyone who can list containers, pass the value through environment: instead", l.name, names[j], k.secretVars[names[j]])}
							if kind == "services" {
								le.Service, le.Key = obj, "labels"
							}
							return le
						}
					}
				}
			}
		}
	}
	return nil
}

type labelValue struct {
	name  string
	value *yaml.Node
}

// labelValues lists the label values of a labels: node, in the mapping
// form (merge keys followed) or the list form ("key=value").
func labelValues(n *yaml.Node) []labelValue {
	n = deref(n)
	if n == nil {
		return nil
	}
	var out []labelValue
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "<<" {
				for _, m := range scalarOrList(deref(n.Content[i+1])) {
					out = append(out, labelValues(m)...)
				}
				continue
			}
			if v := deref(n.Content[i+1]); v != nil && v.Kind == yaml.ScalarNode {
				out = append(out, labelValue{n.Content[i].Value, v})
			}
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if item = deref(item); item != nil && item.Kind == yaml.ScalarNode {
				name, _, _ := strings.Cut(item.Value, "=")
				out = append(out, labelValue{name, item})
			}
		}
	}
	return out
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// variableRef matches $NAME or ${NAME...} (also nested in a default),
// not the escaped $$NAME.
func variableRef(name string) *regexp.Regexp {
	q := regexp.QuoteMeta(name)
	return regexp.MustCompile(`(^|[^$])\$(\{` + q + `([^A-Za-z0-9_]|$)|` + q + `([^A-Za-z0-9_]|$))`)
}

// refuseEncryptedIncludeEnv refuses `include: env_file:` entries naming a
// .age file: compose-go reads those itself while loading, as plain text.
func refuseEncryptedIncludeEnv(src *sources) error {
	for _, f := range src.files {
		for _, doc := range f.docs {
			inc := mapValue(docRoot(doc), "include")
			if inc == nil || inc.Kind != yaml.SequenceNode {
				continue
			}
			for _, item := range inc.Content {
				ef := mapValue(item, "env_file")
				if ef == nil {
					continue
				}
				for _, n := range scalarOrList(ef) {
					if isEncrypted(n.Value) {
						return &LoadError{File: f.rel, Line: n.Line, Key: "include.env_file",
							Msg: fmt.Sprintf("%s is encrypted, and include env files are read as plain text; name it in the pin file's env_files instead", n.Value)}
					}
				}
			}
		}
	}
	return nil
}
