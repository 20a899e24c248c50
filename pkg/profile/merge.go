package profile

// mergeKeys names the lists that merge item by item, keyed by a field,
// instead of being replaced: overriding one stack component or opt-out of an
// extended profile should not mean restating all of them.
var mergeKeys = map[string]string{
	"spec.stack.components": "name",
	"spec.checks.optOuts":   "id",
}

// mergeValues overlays child on base. Maps merge key by key, a null in the
// child removes the key, lists named in mergeKeys merge by their key field,
// and any other value in the child replaces the base's.
func mergeValues(base, child any, path string) any {
	bm, bok := base.(map[string]any)
	cm, cok := child.(map[string]any)
	if bok && cok {
		out := make(map[string]any, len(bm)+len(cm))
		for k, v := range bm {
			out[k] = v
		}
		for k, v := range cm {
			if v == nil {
				delete(out, k)
				continue
			}
			p := k
			if path != "" {
				p = path + "." + k
			}
			if bv, ok := out[k]; ok {
				out[k] = mergeValues(bv, v, p)
			} else {
				out[k] = v
			}
		}
		return out
	}
	if key, ok := mergeKeys[path]; ok {
		bl, bok := base.([]any)
		cl, cok := child.([]any)
		if bok && cok {
			return mergeListByKey(bl, cl, key, path)
		}
	}
	return child
}

func mergeListByKey(base, child []any, key, path string) []any {
	out := make([]any, len(base), len(base)+len(child))
	copy(out, base)
	index := map[any]int{}
	for i, item := range out {
		if m, ok := item.(map[string]any); ok {
			index[m[key]] = i
		}
	}
	for _, item := range child {
		m, ok := item.(map[string]any)
		if ok {
			if i, found := index[m[key]]; found && m[key] != nil {
				out[i] = mergeValues(out[i], item, path+"[]")
				continue
			}
		}
		out = append(out, item)
	}
	return out
}
