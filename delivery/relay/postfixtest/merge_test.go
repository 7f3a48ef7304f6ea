package postfixtest

import "testing"

func TestMergeMainCF(t *testing.T) {
	base := "# written by postfixtest\na = 1\nb = 2\n  b-continued\nc = 3\n"
	extra := "b = x, y\n  z\nd = 4\n"
	want := "# written by postfixtest\na = 1\nb = x, y\n  z\nc = 3\nd = 4\n"
	if got := mergeMainCF(base, extra); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
