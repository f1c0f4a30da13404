package pgtest_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// connect opens a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// userRelations counts the tables, views, sequences... outside the system
// schemas of the database conn is connected to.
func userRelations(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	err := conn.QueryRow(t.Context(), `
		SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewDatabase(t *testing.T) {
	ctx := t.Context()
	urlA, urlB := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if urlA == urlB {
		t.Fatalf("two NewDatabase calls returned %s", urlA)
	}
	a, b := connect(t, urlA), connect(t, urlB)
	var nameA, nameB string
	if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SELECT current_database()").Scan(&nameB); err != nil {
		t.Fatal(err)
	}
	if nameA == nameB || !strings.HasPrefix(nameA, "pgtest") {
		t.Errorf("databases %q and %q: want different names starting with pgtest (the test binary)", nameA, nameB)
	}
	if n := userRelations(t, a); n != 0 {
		t.Errorf("new database %s has %d relations", nameA, n)
	}
	if _, err := a.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	if n := userRelations(t, b); n != 0 {
		t.Errorf("database %s has %d relations after creating a table in %s", nameB, n, nameA)
	}
}

// TestNewDatabaseParallel creates databases from parallel tests and checks
// they are distinct, then dropped when their tests end, connections or not.
func TestNewDatabaseParallel(t *testing.T) {
	var mu sync.Mutex
	names := map[string]bool{}
	outer := t
	t.Run("group", func(t *testing.T) {
		for range 8 {
			t.Run("db", func(t *testing.T) {
				t.Parallel()
				// Left open past the test's end, for the drop to force.
				conn := connect(outer, pgtest.NewDatabase(t))
				var name string
				if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if names[name] {
					t.Errorf("database %s handed out twice", name)
				}
				names[name] = true
			})
		}
	})
	if len(names) != 8 {
		t.Fatalf("got %d databases, want 8", len(names))
	}

	server := connect(t, pgtest.ServerURL())
	var db string
	if err := server.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil || db != "postgres" {
		t.Fatalf("ServerURL database = %q, %v; want postgres", db, err)
	}
	for name := range names {
		var exists bool
		if err := server.QueryRow(t.Context(), "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}
