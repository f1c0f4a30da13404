// Package export turns an account's entries into downloadable files: the row
// type, CSV and NDJSON encoders (with a guard against spreadsheet formula
// injection in CSV), and a non-blocking limiter on concurrent exports.
//
// Nothing here buffers more than one row: an encoder writes each row to the
// writer it was given, so a caller that streams rows from the database
// through an encoder to a socket holds memory independent of the row count.
package export

import (
	"time"
)

// Row is one entry of an account as exported. Amount is signed as stored:
// negative for a debit, positive for a credit.
type Row struct {
	EntryID               int64
	TransferID            string
	Time                  time.Time
	Amount                int64
	Currency              string
	CounterpartyAccountID string
	Description           string
	RunningBalance        int64 // the account's balance right after the entry; may be negative
}

// Direction returns "debit" for a negative amount and "credit" otherwise.
func (r *Row) Direction() string {
	if r.Amount < 0 {
		return "debit"
	}
	return "credit"
}

// AbsAmount returns the amount in minor units, always positive.
func (r *Row) AbsAmount() int64 {
	if r.Amount < 0 {
		return -r.Amount
	}
	return r.Amount
}

// Query selects the entries of an export, oldest first (entry id order).
// Zero fields do not restrict.
type Query struct {
	From  time.Time // created_at >= From
	To    time.Time // created_at < To
	After int64     // entry id > After: resume after the last row received
}

// TimeFormat is how times are written: RFC 3339 in UTC with microseconds,
// the database's precision.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Columns are the exported fields, in order: the CSV header row and the
// NDJSON member names.
var Columns = []string{"entry_id", "transfer_id", "time", "direction", "amount", "currency",
	"counterparty_account_id", "description", "running_balance"}
