package config

import (
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// windowList checks a windows key (a list of deploy windows, see
// reconcile/window): each window that does not parse is a problem of its
// own, naming its element. An empty list is refused: it would never open.
// It returns the list as written (nil when absent or invalid); callers
// parse it again with window.ParseAll, which then cannot fail. Any table
// with a windows key (e.g. [[environment_set]]) reuses it.
func (c *checker) windowList(k key, v any) []string {
	list := c.strings(k, v)
	if list == nil {
		return nil
	}
	if len(list) == 0 {
		c.add(k, "is empty, which would never open; remove the key to deploy at any time, or list windows like %q", window.Example)
		return nil
	}
	bad := false
	for i, s := range list {
		if _, err := window.Parse(s); err != nil {
			c.add(k, "element %d: %v", i, err)
			bad = true
		}
	}
	if bad {
		return nil
	}
	return list
}
