package http

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
)

// TestOpenAPI_ProblemTableListsEveryCode: the description's table of
// problem types lists every code of the problem table, with its status,
// and nothing else.
func TestOpenAPI_ProblemTableListsEveryCode(t *testing.T) {
	t.Parallel()
	var doc struct {
		Info struct {
			Description string `json:"description"`
		} `json:"info"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\| ([a-z-]+) \| (\d{3}) \|$`).FindAllStringSubmatch(doc.Info.Description, -1) {
		documented[m[1]], _ = strconv.Atoi(m[2])
	}
	for code, p := range problems {
		if status, ok := documented[code]; !ok || status != p.status {
			t.Errorf("problem %s (%d) is documented as %d in the description's table", code, p.status, status)
		}
	}
	for code := range documented {
		if _, ok := problems[code]; !ok {
			t.Errorf("the description's table lists %s, which the server never sends", code)
		}
	}
}
