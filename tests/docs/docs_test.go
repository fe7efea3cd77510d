package docs

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/raftkv/raftkv"

// root is the module's root, relative to this package.
const root = "../.."

// pkg is a package of the module as go list sees it.
type pkg struct {
	Dir string // relative to the module's root, slash-separated: "internal/wire"
	Doc string // the package comment's first sentence; empty without one
	// Files are the package's Go files (non-test), absolute.
	Files []string
}

// packages lists every package of the module (commands, tests and
// internal ones included).
func packages(t *testing.T) []pkg {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}\t{{join .GoFiles \" \"}}\t{{.Doc}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			t.Fatalf("go list: %q", line)
		}
		rel, err := filepath.Rel(abs, f[0])
		if err != nil {
			t.Fatal(err)
		}
		p := pkg{Dir: filepath.ToSlash(rel), Doc: f[2]}
		for _, name := range strings.Fields(f[1]) {
			p.Files = append(p.Files, filepath.Join(f[0], name))
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func find(t *testing.T, pkgs []pkg, dir string) pkg {
	t.Helper()
	for _, p := range pkgs {
		if p.Dir == dir {
			return p
		}
	}
	t.Fatalf("no package %s", dir)
	return pkg{}
}

// MissingDocs returns the directories of the packages without a package
// comment.
func MissingDocs(pkgs []pkg) []string {
	var missing []string
	for _, p := range pkgs {
		if strings.TrimSpace(p.Doc) == "" {
			missing = append(missing, p.Dir)
		}
	}
	return missing
}

// LayoutRows returns the directories the README's Layout table has a row
// for: the first cell of each row, `path/`, without its slash.
func LayoutRows(readme string) []string {
	_, section, ok := strings.Cut(readme, "\n## Layout\n")
	if !ok {
		return nil
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	cell := regexp.MustCompile("^\\|\\s*`([^`]+)/`\\s*\\|")
	var rows []string
	for _, line := range strings.Split(section, "\n") {
		if m := cell.FindStringSubmatch(line); m != nil {
			rows = append(rows, m[1])
		}
	}
	return rows
}

// LayoutDrift compares the README's rows with the packages' directories:
// the packages without a row, and the rows that name no package.
func LayoutDrift(rows []string, pkgs []pkg) (missing, stale []string) {
	dirs := map[string]bool{}
	for _, p := range pkgs {
		dirs[p.Dir] = true
		if !slices.Contains(rows, p.Dir) {
			missing = append(missing, p.Dir)
		}
	}
	for _, r := range rows {
		if !dirs[r] {
			stale = append(stale, r)
		}
	}
	return missing, stale
}

// Every package says what it is for, in a package comment.
func TestEveryPackageHasADoc(t *testing.T) {
	pkgs := packages(t)
	if missing := MissingDocs(pkgs); len(missing) > 0 {
		t.Errorf("packages without a package comment (add one, in doc.go or the main file): %s", strings.Join(missing, ", "))
	}
	// The check itself: a package without one is caught.
	if got := MissingDocs([]pkg{{Dir: "a", Doc: "Package a is."}, {Dir: "b"}}); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("MissingDocs: %v", got)
	}
}

// The README's Layout table has a row for every package, and only for
// packages.
func TestReadmeLayoutNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := packages(t)
	rows := LayoutRows(string(readme))
	missing, stale := LayoutDrift(rows, pkgs)
	if len(missing) > 0 {
		t.Errorf("README.md, Layout: no row for %s (add \"| `dir/` | what it owns |\")", strings.Join(missing, ", "))
	}
	if len(stale) > 0 {
		t.Errorf("README.md, Layout: rows for what is not a package: %s", strings.Join(stale, ", "))
	}
	// The check itself: a row taken out, or one left for a package gone,
	// is caught.
	cut := strings.Replace(string(readme), "| `kv/` |", "| kv |", 1)
	if cutMissing, _ := LayoutDrift(LayoutRows(cut), pkgs); !slices.Equal(Unlisted(cutMissing, missing), []string{"kv"}) {
		t.Fatalf("a README without kv's row: missing %v", cutMissing)
	}
	if _, more := LayoutDrift(append(rows, "gone/away"), pkgs); !slices.Equal(Unlisted(more, stale), []string{"gone/away"}) {
		t.Fatalf("a row for a package gone: stale %v", more)
	}
}

// parse parses the package's files.
func parse(t *testing.T, p pkg) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range p.Files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// sentinels returns the names of the package-level variables named Err*
// that files declare.
func sentinels(files []*ast.File) []string {
	var names []string
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, s := range g.Specs {
					for _, id := range s.(*ast.ValueSpec).Names {
						if strings.HasPrefix(id.Name, "Err") && id.IsExported() {
							names = append(names, id.Name)
						}
					}
				}
			}
		}
	}
	return names
}

// kvSentinelsIn returns the sentinels of package kv (by name) that the
// initial value of the package-level variable name refers to, in files.
func kvSentinelsIn(files []*ast.File, name string) []string {
	var found []string
	for _, f := range files {
		kvName := ""
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == module+"/kv" {
				kvName = "kv"
				if imp.Name != nil {
					kvName = imp.Name.Name
				}
			}
		}
		if kvName == "" {
			continue
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if id.Name != name || i >= len(vs.Values) {
						continue
					}
					ast.Inspect(vs.Values[i], func(n ast.Node) bool {
						if sel, ok := n.(*ast.SelectorExpr); ok {
							if x, ok := sel.X.(*ast.Ident); ok && x.Name == kvName {
								found = append(found, sel.Sel.Name)
							}
						}
						return true
					})
				}
			}
		}
	}
	return found
}

// Unlisted returns the names of want that are not in have.
func Unlisted(want, have []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	return missing
}

// Every sentinel error of kv has its HTTP status in internal/wire's table
// (which the server answers with and the Go client reads back), so that
// the statuses docs/API.md lists cover every error; a sentinel without one
// would travel as a bare 500.
func TestEverySentinelHasAStatus(t *testing.T) {
	pkgs := packages(t)
	errs := sentinels(parse(t, find(t, pkgs, "kv")))
	if len(errs) < 10 {
		t.Fatalf("found only %d sentinels in kv: %v", len(errs), errs)
	}
	mapped := kvSentinelsIn(parse(t, find(t, pkgs, "internal/wire")), "statuses")
	if len(mapped) == 0 {
		t.Fatal("found no sentinel of kv in internal/wire's statuses")
	}
	missing := Unlisted(errs, mapped)
	if len(missing) > 0 {
		t.Errorf("internal/wire's statuses has no HTTP status for %s (add one there, and to docs/API.md's statuses if it is a new one)",
			strings.Join(missing, ", "))
	}
	// The check itself: a sentinel taken out of the table is caught.
	out := mapped[0]
	fewer := slices.DeleteFunc(slices.Clone(mapped), func(s string) bool { return s == out })
	if more := Unlisted(errs, fewer); !slices.Equal(Unlisted(more, missing), []string{out}) {
		t.Fatalf("a table without %s: missing %v", out, more)
	}
}
