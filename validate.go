package holdfast

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidCurrency returns EINVALID unless code is an active ISO 4217 code
// with a minor unit (see CurrencyExponent).
func ValidCurrency(code string) error {
	if _, ok := currencyExponents[code]; !ok {
		return Errorf(EINVALID, "currency must be an active ISO 4217 code such as USD, JPY or KWD")
	}
	return nil
}

// ValidID returns EINVALID unless s is a UUID in its canonical text form
// (either case), the form of every id in the API.
func ValidID(field, s string) error {
	if len(s) != 36 {
		return Errorf(EINVALID, "%s must be a UUID", field)
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return Errorf(EINVALID, "%s must be a UUID", field)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return Errorf(EINVALID, "%s must be a UUID", field)
			}
		}
	}
	return nil
}

// CanonicalID returns a UUID in lower case, the form the service stores.
func CanonicalID(s string) string { return strings.ToLower(s) }

// validText returns EINVALID unless s is valid UTF-8 of min..max bytes with no
// control characters other than tab and newline.
func validText(field, s string, min, max int) error {
	if len(s) < min {
		if min == 1 {
			return Errorf(EINVALID, "%s is required", field)
		}
		return Errorf(EINVALID, "%s must be at least %d bytes", field, min)
	}
	if len(s) > max {
		return Errorf(EINVALID, "%s must be at most %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			return Errorf(EINVALID, "%s contains a control character", field)
		}
	}
	return nil
}
