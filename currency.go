package holdfast

import "strings"

// currencyExponents is ISO 4217's table of active currency codes with their
// minor-unit exponent: an amount of 500 is 5.00 USD, 500 JPY, 0.500 KWD.
// Codes without a minor unit (precious metals, the SDR, testing codes) are
// left out: a ledger of minor units cannot hold them.
var currencyExponents = func() map[string]int {
	m := map[string]int{}
	add := func(exp int, codes string) {
		for _, c := range strings.Fields(codes) {
			m[c] = exp
		}
	}
	add(0, `BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF`)
	add(2, `AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
		CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
		GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL
		MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN
		QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD
		TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG`)
	add(3, `BHD IQD JOD KWD LYD OMR TND`)
	add(4, `CLF UYW`)
	return m
}()

// CurrencyExponent returns the number of digits after the decimal point of
// a currency's minor unit (JPY 0, USD 2, KWD 3), and whether the code is in
// the ISO 4217 table. An account created before the table, under a code
// outside it, is shown with 2.
func CurrencyExponent(code string) (int, bool) {
	e, ok := currencyExponents[code]
	if !ok {
		return 2, false
	}
	return e, true
}
