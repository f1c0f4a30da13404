package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// VerifyWebhook is what a receiver writes (docs/webhooks.md shows it): it
// checks a request's Standard Webhooks signature with the endpoint's
// secret, and refuses a timestamp more than five minutes from now (a
// replay). Receivers deduplicate on webhook-id: a message may come twice.
func VerifyWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return errors.New("missing webhook-id or webhook-timestamp")
	}
	if d := now.Sub(time.Unix(unix, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too far from now")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return errors.New("malformed secret")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	// Several signatures during a secret rotation: any one will do.
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		version, b64, _ := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if version == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// Example_verify checks the Standard Webhooks spec's published test vector
// with the receiver's code of docs/webhooks.md.
func Example_verify() {
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	fmt.Println(VerifyWebhook(secret, h, body, time.Unix(1614265330, 0)))
	fmt.Println(VerifyWebhook(secret, h, []byte(`{"test": 2432232315}`), time.Unix(1614265330, 0)))
	fmt.Println(VerifyWebhook(secret, h, body, time.Unix(1614265330, 0).Add(time.Hour)))
	// Output:
	// <nil>
	// no valid signature
	// timestamp too far from now
}
