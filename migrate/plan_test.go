package migrate

import (
	"regexp"
	"slices"
	"testing"
)

func TestPlanFolders(t *testing.T) {
	src := []SourceFolder{
		{Name: "INBOX"}, {Name: "Sent Items"}, {Name: "Deleted Messages"}, {Name: "Spam"},
		{Name: "Old.Stuff/a*b"}, {Name: "Shared/x"}, {Name: "Projects/2024"}, {Name: "inbox/Sub"},
	}
	tgt := []TargetFolder{{Name: "Sent", SpecialUse: `\Sent`}, {Name: "Trash", SpecialUse: `\Trash`}, {Name: "Junk", SpecialUse: `\Junk`}}
	plan := planFolders(src, tgt, Options{
		Map:     map[string]string{"Projects": "Work/Projects"},
		Exclude: []*regexp.Regexp{regexp.MustCompile(`^Shared/`)},
	})
	var got []string
	for _, p := range plan {
		got = append(got, p.src.Name+" -> "+p.target+" "+p.use)
	}
	want := []string{
		"INBOX -> INBOX ",
		"inbox/Sub -> INBOX/Sub ",
		`Spam -> Junk \Junk`,
		"Old.Stuff/a*b -> Old_Stuff/a_b ",
		`Sent Items -> Sent \Sent`,
		`Deleted Messages -> Trash \Trash`,
		"Projects/2024 -> Work/Projects/2024 ",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("plan\n%q\nwant\n%q", got, want)
	}
}

func TestFlagKey(t *testing.T) {
	if a, b := flagKey([]string{`\SEEN`, "Kw", `\Recent`, `\Seen`}), flagKey([]string{"Kw", `\seen`}); a != b {
		t.Fatalf("%q != %q", a, b)
	}
	if flagKey([]string{"kw"}) == flagKey([]string{"Kw"}) {
		t.Fatal("keyword case is not kept")
	}
}
