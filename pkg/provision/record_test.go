package provision

import "testing"

func TestRecordLoadedImages(t *testing.T) {
	rec := Record{}
	if rec.Loaded("a:1") {
		t.Fatal("an empty record has an image loaded")
	}
	rec.AddLoaded("a:1")
	rec.AddLoaded("b:2")
	rec.AddLoaded("a:1")
	if got := rec[KeyLoadedImages]; got != "a:1,b:2" {
		t.Errorf("loaded images recorded as %q, want each once, in order", got)
	}
	if !rec.Loaded("b:2") || rec.Loaded("a") || rec.Loaded("") {
		t.Errorf("Loaded matches other than whole references: %q", rec[KeyLoadedImages])
	}
}
