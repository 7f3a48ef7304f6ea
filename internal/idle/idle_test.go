package idle

import (
	"slices"
	"testing"
)

func TestStack(t *testing.T) {
	var st Stack[int]
	if _, ok := st.Pop(func(int) bool { return true }, func(int) {}); ok {
		t.Fatal("Pop on an empty stack")
	}
	for i := 1; i <= 4; i++ {
		if kept := st.Push(i, 3); kept != (i <= 3) {
			t.Fatalf("Push(%d) kept=%v with max 3", i, kept)
		}
	}
	// The top (3) is not usable: discarded, and 2 comes next.
	var discarded []int
	c, ok := st.Pop(func(c int) bool { return c != 3 }, func(c int) { discarded = append(discarded, c) })
	if !ok || c != 2 || !slices.Equal(discarded, []int{3}) || st.Len() != 1 {
		t.Fatalf("Pop = %d, %v; discarded %v; %d left", c, ok, discarded, st.Len())
	}
	if all := st.Drain(); !slices.Equal(all, []int{1}) || st.Len() != 0 {
		t.Fatalf("Drain = %v, %d left", all, st.Len())
	}
}
