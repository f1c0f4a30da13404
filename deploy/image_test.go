package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile returns container/Dockerfile's instructions, one a line, with
// continuation lines joined.
func dockerfile(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// shellWords splits a command line as sh would, for the double-quoted words
// of a go build line (no escapes, no single quotes).
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// The final stage is scratch with the binary, CA certificates, a data
// volume, a non-root numeric user and `holdfast serve` as its entrypoint.
func TestImage_FromScratchAsNonRoot(t *testing.T) {
	t.Parallel()
	lines := dockerfile(t)
	last := slices.IndexFunc(lines, func(l string) bool { return l == "FROM scratch" })
	if last < 0 {
		t.Fatal("the Dockerfile has no FROM scratch stage")
	}
	final := strings.Join(lines[last:], "\n")
	for _, want := range []string{
		"COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
		"COPY --from=build /out/holdfast /holdfast",
		"VOLUME /data",
		`ENTRYPOINT ["/holdfast", "serve"]`,
		"EXPOSE 8080",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage lacks %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(final)
	if user == nil || user[1] == "0" || user[2] == "0" {
		t.Errorf("the final stage's USER is not a numeric non-root user: %v", user)
	}
}

// The binary built as the Dockerfile builds it (its ENV CGO_ENABLED=0 and
// its go build line, word for word) is static, since scratch has no
// dynamic loader or libc, and runs.
func TestImage_BinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server binary")
	}
	t.Parallel()
	lines := dockerfile(t)
	if !slices.Contains(lines, "ENV CGO_ENABLED=0") {
		t.Fatal("the Dockerfile's build stage does not set ENV CGO_ENABLED=0")
	}
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "RUN go build ") })
	if i < 0 {
		t.Fatal("the Dockerfile has no RUN go build line")
	}
	const commit = "deploy-test-commit"
	line := strings.NewReplacer("${COMMIT}", commit, "${BUILD_TIME}", "2000-01-01T00:00:00Z").Replace(lines[i])
	args := shellWords(strings.TrimPrefix(line, "RUN "))
	for _, want := range []string{"-trimpath", "-ldflags", "-o", "./cmd/holdfast"} {
		if !slices.Contains(args, want) {
			t.Fatalf("the go build line %q has no %s", lines[i], want)
		}
	}
	bin := filepath.Join(t.TempDir(), "holdfast")
	args[slices.Index(args, "-o")+1] = bin
	build := exec.Command(args[0], args[1:]...)
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it needs a dynamic loader", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "commit: "+commit) {
		t.Errorf("holdfast version: %v\n%s", err, out)
	}
}
