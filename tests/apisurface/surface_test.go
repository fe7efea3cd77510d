package apisurface

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/raftkv/raftkv"

// root is the module's root, relative to this package.
const root = "../.."

// public are the packages an embedder or a client program imports: their
// exported API is the module's promise, and may name only their own types,
// each other's and the standard library's or third parties'. Everything
// else of the module is internal/, a command, a test, or the example
// (TestEveryOtherPackageIsInternal). loadgen is public because the
// benchmark module (bench/) drives other systems with it.
var public = []string{"raftstore", "client", "kv", "api", "tlscerts", "loadgen"}

// A new package outside internal/ is a new public API: it must be added to
// public (and so pass the checks above) on purpose, not by accident.
func TestEveryOtherPackageIsInternal(t *testing.T) {
	isPublic := map[string]bool{}
	for _, p := range public {
		isPublic[module+"/"+p] = true
	}
	for _, p := range strings.Fields(goList(t, "./...")) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
		first, _, _ := strings.Cut(rel, "/")
		switch first {
		case "internal", "cmd", "tests", "example":
			continue
		}
		if !isPublic[p] {
			t.Errorf("%s is outside internal/ but not in the public list: move it under internal/, or make it public on purpose", p)
		}
	}
}

// goList runs go list in the module's root and returns its output.
func goList(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// load type-checks nothing: it reads the compiler's export data of each of
// paths (building them if the build cache lacks it) and returns their
// packages as go/types sees them.
func load(t *testing.T, paths ...string) []*types.Package {
	t.Helper()
	exports := map[string]string{}
	out := goList(t, append([]string{"-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, paths...)...)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		path, file, _ := strings.Cut(line, "\t")
		exports[path] = file
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		if exports[path] == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(exports[path])
	})
	var pkgs []*types.Package
	for _, path := range paths {
		pkg, err := imp.Import(path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		pkgs = append(pkgs, pkg)
	}
	return pkgs
}

func isInternal(path string) bool {
	return strings.Contains(path+"/", "/internal/") || strings.HasPrefix(path, "internal/")
}

// leakChecker walks everything a package exports and records each place
// where a type of an internal package shows through.
type leakChecker struct {
	walked map[*types.TypeName]bool // the module's named types already walked
	leaks  map[string]bool          // "symbol: the internal type"
}

// Leaks returns, sorted, every exported symbol of pkgs whose declaration
// names a type of a package whose path has an internal/ element, with the
// type: directly, or through a type of this module that the symbol
// exposes (its exported fields and methods are then walked too).
func Leaks(pkgs []*types.Package) []string {
	c := &leakChecker{walked: map[*types.TypeName]bool{}, leaks: map[string]bool{}}
	for _, pkg := range pkgs {
		scope := pkg.Scope()
		for _, name := range scope.Names() {
			obj := scope.Lookup(name)
			if !obj.Exported() {
				continue
			}
			where := pkg.Name() + "." + name
			switch obj := obj.(type) {
			case *types.TypeName:
				if alias, ok := obj.Type().(*types.Alias); ok {
					c.typ(where, alias)
					continue
				}
				c.named(obj, where)
			default: // func, var, const
				c.typ(where, obj.Type())
			}
		}
	}
	leaks := make([]string, 0, len(c.leaks))
	for l := range c.leaks {
		leaks = append(leaks, l)
	}
	sort.Strings(leaks)
	return leaks
}

// named walks what a named type of this module exposes: its underlying
// type's exported parts and its exported methods (promoted ones included).
func (c *leakChecker) named(obj *types.TypeName, where string) {
	if c.walked[obj] {
		return
	}
	c.walked[obj] = true
	c.typ(where, obj.Type().Underlying())
	ms := types.NewMethodSet(types.NewPointer(obj.Type()))
	for i := range ms.Len() {
		m := ms.At(i).Obj()
		if m.Exported() {
			c.typ(where+"."+m.Name(), m.Type())
		}
	}
}

func (c *leakChecker) typ(where string, t types.Type) {
	switch t := t.(type) {
	case *types.Alias:
		if pkg := t.Obj().Pkg(); pkg != nil && isInternal(pkg.Path()) {
			c.leaks[where+": "+pkg.Path()+"."+t.Obj().Name()] = true
			return
		}
		for a := range t.TypeArgs().Types() {
			c.typ(where, a)
		}
		c.typ(where, t.Rhs())
	case *types.Named:
		obj := t.Obj()
		pkg := obj.Pkg()
		if pkg != nil && isInternal(pkg.Path()) {
			c.leaks[where+": "+pkg.Path()+"."+obj.Name()] = true
			return
		}
		for a := range t.TypeArgs().Types() {
			c.typ(where, a)
		}
		// A type of this module outside internal/ exposes what it
		// exports: a public package's type is walked (once) as part of its
		// package, another's (httpd's, say) as part of where it shows.
		if pkg != nil && (pkg.Path() == module || strings.HasPrefix(pkg.Path(), module+"/")) {
			name := pkg.Name() + "." + obj.Name()
			if !slices.Contains(publicPaths(), pkg.Path()) {
				name += " (in " + where + ")"
			}
			c.named(t.Origin().Obj(), name)
		}
	case *types.Pointer:
		c.typ(where, t.Elem())
	case *types.Slice:
		c.typ(where, t.Elem())
	case *types.Array:
		c.typ(where, t.Elem())
	case *types.Chan:
		c.typ(where, t.Elem())
	case *types.Map:
		c.typ(where, t.Key())
		c.typ(where, t.Elem())
	case *types.Signature:
		for v := range t.Params().Variables() {
			c.typ(where, v.Type())
		}
		for v := range t.Results().Variables() {
			c.typ(where, v.Type())
		}
		for tp := range t.TypeParams().TypeParams() {
			c.typ(where, tp.Constraint())
		}
	case *types.Struct:
		for f := range t.Fields() {
			// An embedded field's exported members are promoted even
			// when its own name is not exported.
			if f.Exported() || f.Embedded() {
				c.typ(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for m := range t.ExplicitMethods() {
			if m.Exported() {
				c.typ(where+"."+m.Name(), m.Type())
			}
		}
		for e := range t.EmbeddedTypes() {
			c.typ(where, e)
		}
	case *types.Union:
		for i := range t.Len() {
			c.typ(where, t.Term(i).Type())
		}
	case *types.TypeParam:
		c.typ(where, t.Constraint())
	case *types.Basic, nil:
	default:
		panic(fmt.Sprintf("%s: unexpected type %T", where, t))
	}
}

func publicPaths() []string {
	var paths []string
	for _, p := range public {
		paths = append(paths, module+"/"+p)
	}
	return paths
}

// No exported signature of a public package names an internal type: a
// program could not write it down, and the internal package's changes
// would break it unannounced.
func TestPublicAPINamesNoInternalType(t *testing.T) {
	if leaks := Leaks(load(t, publicPaths()...)); len(leaks) > 0 {
		t.Fatalf("the public API names internal types:\n  %s", strings.Join(leaks, "\n  "))
	}
}

// The checker itself finds each kind of leak, and only those.
func TestCheckerFindsLeaks(t *testing.T) {
	got := Leaks(load(t, module+"/tests/apisurface/testdata/leaky"))
	tu := module + "/internal/tlsutil."
	want := []string{
		"leaky.Config.Store: " + tu + "Store",
		"leaky.Default: " + tu + "Files",
		"leaky.Files: " + tu + "Files",
		"leaky.Holder.Take: " + tu + "CertOptions",
		"leaky.Make: " + tu + "Pair",
		"leaky.Opts: " + tu + "Files",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the checker found:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// sentinels returns the package-level variables named Err* that a
// package's files (non-test) declare, each with its initial value as
// written ("kv.ErrNotFound", `errors.New("key not found")`).
func sentinels(t *testing.T, pkg string) map[string]string {
	t.Helper()
	dir, files, _ := strings.Cut(strings.TrimSpace(goList(t, "-f", "{{.Dir}}\t{{join .GoFiles \" \"}}", module+"/"+pkg)), "\t")
	fset := token.NewFileSet()
	vars := map[string]string{}
	for _, name := range strings.Fields(files) {
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !strings.HasPrefix(id.Name, "Err") || !id.IsExported() {
						continue
					}
					val := ""
					if i < len(vs.Values) {
						val = string(src[fset.Position(vs.Values[i].Pos()).Offset:fset.Position(vs.Values[i].End()).Offset])
					}
					vars[id.Name] = val
				}
			}
		}
	}
	return vars
}

// MissingReexports returns, sorted, each of kv's sentinels (by name) that
// raftstore's variables (name → initial value) do not re-export as the
// same variable of kv.
func MissingReexports(kvErrs, raftstoreVars map[string]string) []string {
	var missing []string
	for name := range kvErrs {
		if raftstoreVars[name] != "kv."+name {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	return missing
}

// Package kv is the home of the sentinel errors; raftstore re-exports
// every one of them, so an embedder tests for any error of the Go API with
// raftstore alone.
func TestRaftstoreReexportsEverySentinel(t *testing.T) {
	kvErrs := sentinels(t, "kv")
	if len(kvErrs) < 10 {
		t.Fatalf("found only %d sentinels in kv: %v", len(kvErrs), kvErrs)
	}
	if missing := MissingReexports(kvErrs, sentinels(t, "raftstore")); len(missing) > 0 {
		t.Fatalf("raftstore does not re-export these sentinels of kv (add `ErrX = kv.ErrX` to raftstore/errors.go): %s",
			strings.Join(missing, ", "))
	}
	// And the check catches one missing, or one bound to another error.
	if got := MissingReexports(map[string]string{"ErrA": "", "ErrB": "", "ErrC": ""},
		map[string]string{"ErrA": "kv.ErrA", "ErrB": "kv.ErrC"}); !slices.Equal(got, []string{"ErrB", "ErrC"}) {
		t.Fatalf("MissingReexports: %v", got)
	}
}
