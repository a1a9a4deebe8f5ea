package engine

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPackageDocsSayWhatTheyImport: every package of the module (commands
// aside) says in its doc comment what it may import, and names there each
// package of hookrelay it does import, so that the one-way layering the
// comments describe is the one the code has. A name covers its subpackages
// ("engine/internal" covers engine/internal/headers; "internal/" every
// internal package).
//
// It reads the files' imports with go/parser, not `go list`: no child
// process, and the same answer on every machine.
func TestPackageDocsSayWhatTheyImport(t *testing.T) {
	const module = "github.com/hookrelay/hookrelay/"
	root := ".."
	err := filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, dir)
		if rel != "." && (rel == "cmd" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		doc, imports, n := "", map[string]bool{}, 0
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ParseComments|parser.ImportsOnly)
			if err != nil {
				return err
			}
			n++
			if af.Doc != nil {
				doc += af.Doc.Text()
			}
			for _, is := range af.Imports {
				p, _ := strconv.Unquote(is.Path.Value)
				if strings.HasPrefix(p, module) {
					imports[strings.TrimPrefix(p, module)] = true
				}
			}
		}
		if n == 0 {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if !strings.Contains(doc, "import") {
			t.Errorf("%s: the package doc does not say what it may import", rel)
			return nil
		}
		for p := range imports {
			if !named(doc, p) {
				t.Errorf("%s imports %s, which its package doc does not name", rel, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// named says whether doc names package p or a parent of it: a parent
// within a room ("engine/internal"), or a top directory as a whole
// ("internal/", "engine/internal/*"), never "engine" alone, which names the
// composition root.
func named(doc, p string) bool {
	doc = strings.Join(strings.Fields(doc), " ")
	ends := []string{" ", ",", ")", ";", ".", "*", "/*", "/..."}
	for q := p; q != "." && q != ""; q = filepath.ToSlash(filepath.Dir(q)) {
		name := q
		if !strings.Contains(q, "/") && q != p {
			name = q + "/" // internal/ or internal/*, not the word internal
		}
		for _, e := range ends {
			if strings.Contains(doc, name+e) {
				return true
			}
		}
		if strings.HasSuffix(name, "/") && strings.Contains(doc, name+" ") {
			return true
		}
	}
	return false
}
