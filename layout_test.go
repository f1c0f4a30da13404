package holdfast_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// These tests hold the seams between packages in place: they read the
// module's import graph and source, so a change that crosses a seam fails
// here rather than in the next engineer's head.

const module = "github.com/holdfast/holdfast"

// goList runs go list in the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// mustNotDependOn fails t if deps lists any of the module's packages rel.
func mustNotDependOn(t *testing.T, what string, deps []string, rel ...string) {
	t.Helper()
	for _, r := range rel {
		if slices.Contains(deps, module+"/"+r) {
			t.Errorf("%s depends on %s/%s", what, module, r)
		}
	}
}

func TestReceiptsImportsNoAdapter(t *testing.T) {
	t.Parallel()
	deps := goList(t, "-deps", "./receipts")
	mustNotDependOn(t, "package receipts", deps, "postgres", "http", "app")
}

func TestPostgresTestsLinkNeitherTheHTTPLayerNorTheApp(t *testing.T) {
	t.Parallel()
	deps := goList(t, "-deps", "-test", "./postgres")
	mustNotDependOn(t, "the tests of package postgres", deps, "http", "app", "receipts", "events")
}

func TestTestKitsLiveUnderInternalTestkit(t *testing.T) {
	t.Parallel()
	for _, p := range goList(t, "-f", "{{.ImportPath}}", "./internal/...") {
		rel := strings.TrimPrefix(p, module+"/")
		if strings.HasSuffix(rel, "test") && !strings.HasPrefix(rel, "internal/testkit/") {
			t.Errorf("test kit %s is outside internal/testkit/", rel)
		}
	}
}

func TestNoPackageIsNamedLikeNATSJetStream(t *testing.T) {
	t.Parallel()
	for _, line := range goList(t, "-f", "{{.ImportPath}}:{{.Name}}", "./...") {
		if path, name, _ := strings.Cut(line, ":"); name == "jetstream" {
			t.Errorf("package %s is named jetstream, as is github.com/nats-io/nats.go/jetstream", path)
		}
	}
}

// natsNames are the streams, subjects and durable consumers Holdfast
// creates on NATS.
var natsNames = []string{"events", "jobs", "jobs.receipts", "jobs-dead", "receipts", "analytics", "audit"}

// natsMethods take a stream, subject or consumer name as an argument.
var natsMethods = []string{"Stream", "Consumer", "CreateStream", "CreateOrUpdateStream", "DeleteStream",
	"CreateOrUpdateConsumer", "DeleteConsumer", "Ensure", "AdoptStream", "EnsureGroup", "State", "Prune",
	"PauseConsumer", "ResumeConsumer", "WorkerSeesPause"}

// natsFields hold a stream, subject or consumer name.
var natsFields = []string{"Stream", "Subject", "DeadStream", "Consumer", "JobsStream", "JobsSubject",
	"FilterSubject", "Durable", "Name", "Group"}

func TestEachNATSNameIsOneConstant(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != "." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || path == "layout_test.go" {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, lit := range natsNameLiterals(f) {
			t.Errorf("%s: NATS name %s written as a literal; use its constant", fset.Position(lit.Pos()), lit.Value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// natsNameLiterals returns the literals in f, outside constant
// declarations, that spell one of natsNames where a NATS name is meant: an
// argument of a natsMethods call, a natsFields value, or, for the names
// that cannot mean anything else, anywhere.
func natsNameLiterals(f *ast.File) []*ast.BasicLit {
	var found []*ast.BasicLit
	name := func(e ast.Expr) *ast.BasicLit {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return nil
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || !slices.Contains(natsNames, s) {
			return nil
		}
		return lit
	}
	add := func(e ast.Expr) {
		if lit := name(e); lit != nil && !slices.Contains(found, lit) {
			found = append(found, lit)
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GenDecl:
			return n.Tok != token.CONST
		case *ast.Field:
			return false // struct tags
		case *ast.BasicLit:
			if s, _ := strconv.Unquote(n.Value); s == "jobs.receipts" || s == "jobs-dead" {
				add(n)
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && slices.Contains(natsMethods, sel.Sel.Name) {
				for _, a := range n.Args {
					add(a)
				}
			}
		case *ast.KeyValueExpr:
			if k, ok := n.Key.(*ast.Ident); ok && slices.Contains(natsFields, k.Name) {
				add(n.Value)
			}
		case *ast.AssignStmt:
			for i, l := range n.Lhs {
				if sel, ok := l.(*ast.SelectorExpr); ok && slices.Contains(natsFields, sel.Sel.Name) && i < len(n.Rhs) {
					add(n.Rhs[i])
				}
			}
		}
		return true
	})
	return found
}
