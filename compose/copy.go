package compose

import (
	"encoding/json"
	"fmt"
)

// deepCopy returns a copy of *v sharing no slice, map or pointer with it,
// by a JSON round trip. The Engine API types are plain JSON data (that is
// how they travel to the daemon), so the round trip is exact for them, and
// unlike a hand-written copy it cannot miss a field a later API version
// adds. TestContainerCreateDeepCopies checks the round trip is lossless on
// the kitchen-sink project.
func deepCopy[T any](v *T) *T {
	out := new(T)
	if v == nil {
		return out
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		// Only Engine API config types go through here; failing to
		// round-trip them is a programming error.
		panic(fmt.Sprintf("compose: deep copy %T: %v", v, err))
	}
	return out
}
