package holdfast_test

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast"
)

func ExampleTransferCreate_Validate() {
	in := holdfast.TransferCreate{
		DebitAccountID:  "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2b",
		CreditAccountID: "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2c",
		Amount:          1250, // USD 12.50, in cents
		Currency:        "USD",
	}
	fmt.Println(in.Validate())

	in.Amount = 0
	err := in.Validate()
	fmt.Println(holdfast.ErrorCode(err))
	fmt.Println(holdfast.ErrorMessage(err))
	// Output:
	// <nil>
	// invalid-request
	// amount must be a positive whole number of minor units
}

func ExampleErrorCode() {
	notFound := holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	err := fmt.Errorf("create transfer: %w", notFound)
	fmt.Println(holdfast.ErrorCode(err), "/", holdfast.ErrorMessage(err))

	// Any error that is not an *Error is internal, and its text stays hidden.
	fault := errors.New("dial tcp 10.0.0.5:5432: connection refused")
	fmt.Println(holdfast.ErrorCode(fault), "/", holdfast.ErrorMessage(fault))

	fmt.Printf("%q\n", holdfast.ErrorCode(nil))
	// Output:
	// not-found / account not found
	// internal / Internal error.
	// ""
}

func ExampleValidIdempotencyKey() {
	for _, key := range []string{"order-1234", "", "café"} {
		fmt.Printf("%q: %v\n", key, holdfast.ValidIdempotencyKey(key))
	}
	// Output:
	// "order-1234": <nil>
	// "": invalid-request: Idempotency-Key must be 1 to 255 printable ASCII characters
	// "café": invalid-request: Idempotency-Key must be 1 to 255 printable ASCII characters
}
