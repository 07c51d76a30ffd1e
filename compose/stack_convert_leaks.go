package compose

import (
	"fmt"
	"regexp"

	"go.yaml.in/yaml/v4"
)

// checkStackLabels extends checkLabels to the labels a stack adds: a
// service's deploy.labels (the swarm service's, which `docker service
// inspect` shows to anyone with access to a manager) and the labels of
// configs and secrets. A value that interpolates a variable from an
// encrypted file is refused.
func (k *keyring) checkStackLabels(src *sources) error {
	if len(k.secretVars) == 0 {
		return nil
	}
	names := sortedKeys(k.secretVars)
	refs := make([]*regexp.Regexp, len(names))
	for i, name := range names {
		refs[i] = variableRef(name)
	}
	for _, f := range src.files {
		for _, doc := range f.docs {
			root := docRoot(doc)
			for _, kind := range []string{"services", "configs", "secrets"} {
				objs := deref(mapValue(root, kind))
				if objs == nil || objs.Kind != yaml.MappingNode {
					continue
				}
				for i := 0; i+1 < len(objs.Content); i += 2 {
					obj, node := objs.Content[i].Value, deref(objs.Content[i+1])
					labels, key := mapValue(node, "labels"), kind+"."+obj+".labels"
					if kind == "services" {
						labels, key = mapValue(deref(mapValue(node, "deploy")), "labels"), "deploy.labels"
					}
					for _, l := range labelValues(labels) {
						for j, re := range refs {
							if !re.MatchString(l.value.Value) {
								continue
							}
							le := &LoadError{File: f.rel, Line: l.value.Line, Key: key,
								Msg: fmt.Sprintf("label %q uses %s, which comes from the encrypted file %s; labels are readable by anyone with access to the swarm, pass the value through environment: or a secret instead", l.name, names[j], k.secretVars[names[j]])}
							if kind == "services" {
								le.Service = obj
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
