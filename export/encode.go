package export

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
)

// Encoder writes rows to a writer, one at a time.
type Encoder interface {
	// Encode writes one row; it returns the writer's error.
	Encode(r *Row) error
}

// CSVEncoder writes RFC 4180 CSV (quoting by encoding/csv) with a header row.
// Text cells that a spreadsheet would run as a formula are defused (see
// GuardFormula); numeric cells are written as numbers.
type CSVEncoder struct {
	w      *csv.Writer
	record []string
	header bool
}

// NewCSVEncoder returns an encoder that writes to w, header row first. Given
// a *bufio.Writer of at least 4 KiB it writes into that buffer directly,
// with no buffer of its own; otherwise encoding/csv adds a 4 KiB one. Call
// Flush at the end.
func NewCSVEncoder(w io.Writer) *CSVEncoder {
	return &CSVEncoder{w: csv.NewWriter(w), record: make([]string, len(Columns))}
}

// WriteHeader writes the header row unless it was written already; Encode
// calls it before the first row.
func (e *CSVEncoder) WriteHeader() error {
	if e.header {
		return nil
	}
	e.header = true
	return e.w.Write(Columns)
}

// Encode writes one row, after the header row.
func (e *CSVEncoder) Encode(r *Row) error {
	if err := e.WriteHeader(); err != nil {
		return err
	}
	rec := e.record
	rec[0] = strconv.FormatInt(r.EntryID, 10)
	rec[1] = GuardFormula(r.TransferID)
	rec[2] = r.Time.UTC().Format(TimeFormat)
	rec[3] = r.Direction()
	rec[4] = strconv.FormatInt(r.AbsAmount(), 10)
	rec[5] = GuardFormula(r.Currency)
	rec[6] = GuardFormula(r.CounterpartyAccountID)
	rec[7] = GuardFormula(r.Description)
	rec[8] = strconv.FormatInt(r.RunningBalance, 10)
	return e.w.Write(rec)
}

// Flush writes what encoding/csv holds to the underlying writer (flushing
// a *bufio.Writer given to NewCSVEncoder) and returns the first write error.
func (e *CSVEncoder) Flush() error {
	e.w.Flush()
	return e.w.Error()
}

// GuardFormula defuses a text cell a spreadsheet would evaluate (OWASP "CSV
// injection"): one starting with = + - @, tab or carriage return gets a
// leading single quote. Apply it to text only: numbers such as a negative
// balance must stay numbers.
func GuardFormula(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// NDJSONEncoder writes one JSON object per line (application/x-ndjson).
// Values are written as they are: JSON readers do not evaluate formulas.
type NDJSONEncoder struct {
	enc *json.Encoder
}

// NewNDJSONEncoder returns an encoder that writes to w.
func NewNDJSONEncoder(w io.Writer) *NDJSONEncoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &NDJSONEncoder{enc: enc}
}

// jsonRow is a Row as an NDJSON line; the member names are Columns.
type jsonRow struct {
	EntryID               int64  `json:"entry_id"`
	TransferID            string `json:"transfer_id"`
	Time                  string `json:"time"`
	Direction             string `json:"direction"`
	Amount                int64  `json:"amount"`
	Currency              string `json:"currency"`
	CounterpartyAccountID string `json:"counterparty_account_id"`
	Description           string `json:"description"`
	RunningBalance        int64  `json:"running_balance"`
}

// Encode writes one row as a line.
func (e *NDJSONEncoder) Encode(r *Row) error {
	return e.enc.Encode(jsonRow{
		EntryID: r.EntryID, TransferID: r.TransferID, Time: r.Time.UTC().Format(TimeFormat),
		Direction: r.Direction(), Amount: r.AbsAmount(), Currency: r.Currency,
		CounterpartyAccountID: r.CounterpartyAccountID, Description: r.Description,
		RunningBalance: r.RunningBalance,
	})
}
