package export_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/export"
)

var at = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("CET", 3600))

// rows covers the cells CSV gets wrong: separators, quotes, newlines,
// unicode, formula prefixes, and a negative balance that must stay a number.
func rows() []export.Row {
	const tr, cp = "0190a8a0-0000-7000-8000-000000000001", "0190a8a0-0000-7000-8000-000000000002"
	return []export.Row{
		{EntryID: 1, TransferID: tr, Time: at, Amount: 1500, Currency: "USD", CounterpartyAccountID: cp, Description: "plain", RunningBalance: 1500},
		{EntryID: 2, TransferID: tr, Time: at, Amount: -2000, Currency: "USD", CounterpartyAccountID: cp, Description: `a, "quoted" b`, RunningBalance: -500},
		{EntryID: 3, TransferID: tr, Time: at, Amount: 7, Currency: "USD", CounterpartyAccountID: cp, Description: "line1\nline2", RunningBalance: -493},
		{EntryID: 4, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "=HYPERLINK(\"x\")", RunningBalance: 0},
		{EntryID: 5, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "+1", RunningBalance: 1},
		{EntryID: 6, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "-2", RunningBalance: 2},
		{EntryID: 7, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "@SUM(A1)", RunningBalance: 3},
		{EntryID: 8, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "\tcmd", RunningBalance: 4},
		{EntryID: 9, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "café ☕ 日本", RunningBalance: 5},
		{EntryID: 10, TransferID: tr, Time: at, Amount: 1, Currency: "USD", CounterpartyAccountID: cp, Description: "", RunningBalance: 6},
	}
}

func TestCSVEncoder(t *testing.T) {
	var buf bytes.Buffer
	enc := export.NewCSVEncoder(&buf)
	for _, r := range rows() {
		if err := enc.Encode(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	const p = "0190a8a0-0000-7000-8000-000000000001,2026-01-02T02:04:05.123456Z,"
	const c = ",USD,0190a8a0-0000-7000-8000-000000000002,"
	want := "entry_id,transfer_id,time,direction,amount,currency,counterparty_account_id,description,running_balance\n" +
		"1," + p + "credit,1500" + c + "plain,1500\n" +
		"2," + p + "debit,2000" + c + `"a, ""quoted"" b",-500` + "\n" +
		"3," + p + "credit,7" + c + "\"line1\nline2\",-493\n" +
		"4," + p + "credit,1" + c + `"'=HYPERLINK(""x"")",0` + "\n" +
		"5," + p + "credit,1" + c + "'+1,1\n" +
		"6," + p + "credit,1" + c + "'-2,2\n" +
		"7," + p + "credit,1" + c + "'@SUM(A1),3\n" +
		"8," + p + "credit,1" + c + "'\tcmd,4\n" +
		"9," + p + "credit,1" + c + "café ☕ 日本,5\n" +
		"10," + p + "credit,1" + c + ",6\n"
	if got := buf.String(); got != want {
		t.Fatalf("CSV:\n%s\nwant:\n%s", got, want)
	}
	// A CSV reader gets the guarded text back, one record per row.
	recs, err := csv.NewReader(strings.NewReader(want)).ReadAll()
	if err != nil || len(recs) != 11 || recs[3][7] != "line1\nline2" || recs[2][8] != "-500" {
		t.Fatalf("read back: %v %q", err, recs)
	}
}

func TestCSVEncoderHeaderOnly(t *testing.T) {
	var buf bytes.Buffer
	enc := export.NewCSVEncoder(&buf)
	if err := enc.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := enc.WriteHeader(); err != nil { // once only
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(export.Columns, ",") + "\n"; buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

// TestCSVEncoderWritesIntoBufio checks that nothing reaches the writer
// below a bufio.Writer until that buffer fills or is flushed: the encoder
// adds no buffer of its own.
func TestCSVEncoderWritesIntoBufio(t *testing.T) {
	var sink bytes.Buffer
	bw := bufio.NewWriterSize(&sink, 32<<10)
	enc := export.NewCSVEncoder(bw)
	r := rows()[0]
	if err := enc.Encode(&r); err != nil {
		t.Fatal(err)
	}
	if sink.Len() != 0 || bw.Buffered() == 0 {
		t.Fatalf("sink has %d bytes, buffer %d: the encoder buffers on its own", sink.Len(), bw.Buffered())
	}
	if err := enc.Flush(); err != nil || sink.Len() == 0 {
		t.Fatalf("flush: %v, %d bytes", err, sink.Len())
	}
}

func TestGuardFormula(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "plain": "plain", "=1+1": "'=1+1", "+1": "'+1", "-1": "'-1", "@x": "'@x",
		"\tx": "'\tx", "\rx": "'\rx", "a=b": "a=b", " =x": " =x",
	} {
		if got := export.GuardFormula(in); got != want {
			t.Errorf("GuardFormula(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNDJSONEncoder(t *testing.T) {
	var buf bytes.Buffer
	enc := export.NewNDJSONEncoder(&buf)
	in := rows()
	for _, r := range in {
		if err := enc.Encode(&r); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(in) {
		t.Fatalf("%d lines, want %d", len(lines), len(in))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"entry_id": 2.0, "transfer_id": in[1].TransferID, "time": "2026-01-02T02:04:05.123456Z",
		"direction": "debit", "amount": 2000.0, "currency": "USD", "counterparty_account_id": in[1].CounterpartyAccountID,
		"description": `a, "quoted" b`, "running_balance": -500.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(export.Columns) {
		t.Errorf("members %v, want %v", got, export.Columns)
	}
	if !strings.Contains(lines[3], `"description":"=HYPERLINK(\"x\")"`) {
		t.Errorf("NDJSON must not guard formulas: %s", lines[3])
	}
}
