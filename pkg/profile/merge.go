package profile

import (
	"fmt"
	"strconv"
	"strings"
)

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

// userPaths maps paths into a merged profile to the paths of the profile
// the user wrote: an item of a list in mergeKeys is found by its key, at
// its index in the user's list when the user wrote it, else named by its
// key (spec.stack.components[kueue]), since it comes from the profile
// extended.
func userPaths(merged, user map[string]any) func(string) string {
	type list struct {
		path   string
		keys   []string       // merged index → key
		byUser map[string]int // key → index in the user's list
	}
	var lists []list
	for path, key := range mergeKeys {
		l := list{path: path, byUser: map[string]int{}}
		for _, item := range listAt(merged, path) {
			k, _ := item.(map[string]any)[key].(string)
			l.keys = append(l.keys, k)
		}
		for i, item := range listAt(user, path) {
			if k, ok := item.(map[string]any)[key].(string); ok {
				if _, dup := l.byUser[k]; !dup {
					l.byUser[k] = i
				}
			}
		}
		lists = append(lists, l)
	}
	return func(p string) string {
		for _, l := range lists {
			rest, ok := strings.CutPrefix(p, l.path+"[")
			if !ok {
				continue
			}
			end := strings.IndexByte(rest, ']')
			i, err := strconv.Atoi(rest[:max(end, 0)])
			if end < 0 || err != nil || i < 0 || i >= len(l.keys) || l.keys[i] == "" {
				return p
			}
			if u, ok := l.byUser[l.keys[i]]; ok {
				return fmt.Sprintf("%s[%d]%s", l.path, u, rest[end+1:])
			}
			return l.path + "[" + l.keys[i] + "]" + rest[end+1:]
		}
		return p
	}
}

// listAt returns the list of maps at a dotted path of v, or nil.
func listAt(v any, path string) []any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	items, _ := v.([]any)
	var out []any
	for _, item := range items {
		if _, ok := item.(map[string]any); ok {
			out = append(out, item)
		} else {
			out = append(out, map[string]any{})
		}
	}
	return out
}
