// Package holdfast holds the domain of the Holdfast payments service: tenants,
// accounts, transfers and the entries they write, idempotency claims, and the
// error codes every layer speaks. It imports only the standard library; the
// adapters (postgres, http, natsconn) implement or consume what is here.
//
// Money is always an int64 count of minor units (cents) with an ISO 4217
// currency code beside it; never a float.
package holdfast

// Page asks for one page of a list. Cursor is opaque: pass back the NextCursor
// of the previous page, or "" for the first page.
type Page struct {
	Limit  int    // 1..MaxPageLimit; 0 means DefaultPageLimit
	Cursor string // opaque; "" for the first page
}

// Default and maximum page sizes for every list.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 500
)

// Normalize returns p with its limit defaulted, or EINVALID when it is out of range.
func (p Page) Normalize() (Page, error) {
	if p.Limit == 0 {
		p.Limit = DefaultPageLimit
	}
	if p.Limit < 1 || p.Limit > MaxPageLimit {
		return p, Errorf(EINVALID, "limit must be between 1 and %d", MaxPageLimit)
	}
	if len(p.Cursor) > 200 {
		return p, Errorf(EINVALID, "cursor is malformed")
	}
	return p, nil
}
