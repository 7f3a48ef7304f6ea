package evict_test

import (
	"fmt"

	"github.com/portcullis-mail/portcullis/internal/evict"
)

func ExampleMakeRoom() {
	m := map[string]int{"a": 1, "b": 2}
	evict.MakeRoom(m, "a", 2) // already there: nothing to forget
	fmt.Println(len(m))
	evict.MakeRoom(m, "c", 2) // full: one entry goes
	m["c"] = 3
	fmt.Println(len(m), m["c"])
	// Output:
	// 2
	// 2 3
}
