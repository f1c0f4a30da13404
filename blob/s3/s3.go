package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
)

// Ledger records, in PostgreSQL, when each blob key was last claimed by a
// put; postgres.BlobLedger implements it. It is what makes a sweep safe
// across replicas (see the package documentation).
type Ledger interface {
	// ClaimBlobs records that keys are being stored now, committed before
	// it returns; it waits for a sweep holding one of them.
	ClaimBlobs(ctx context.Context, keys []string) error
	// StaleBlobs returns up to limit keys greater than after, in order,
	// last claimed before cutoff.
	StaleBlobs(ctx context.Context, cutoff time.Time, after string, limit int) ([]string, error)
	// DropBlob, in one transaction, locks key's row if its last claim is
	// before cutoff, calls drop, then deletes the row. It reports whether
	// it called drop; an error from drop leaves the row.
	DropBlob(ctx context.Context, key string, cutoff time.Time, drop func(context.Context) error) (bool, error)
}

// Config configures a Store.
type Config struct {
	// Endpoint is the server's URL, http:// or https://, without a path.
	// Required.
	Endpoint string
	// Bucket is the bucket's name; it must exist. Required.
	Bucket string
	// Region is the bucket's region. Default "us-east-1".
	Region string
	// AccessKey and SecretKey are the credentials. Required.
	AccessKey, SecretKey string
	// Ledger records the claims of puts. Required.
	Ledger Ledger
	// Parallel bounds the PUTs one CommitBatch runs at once. Default 16.
	Parallel int
	// Timeout bounds each request to the server when the caller's context
	// has no deadline. Default 30s.
	Timeout time.Duration
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Parallel == 0 {
		c.Parallel = 16
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.Endpoint)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "":
		return fmt.Errorf("s3: endpoint %q: want http://host:port or https://host:port", c.Endpoint)
	case c.Bucket == "":
		return errors.New("s3: no bucket")
	case c.AccessKey == "" || c.SecretKey == "":
		return errors.New("s3: no credentials: want an access key and a secret key")
	case c.Ledger == nil:
		return errors.New("s3: no ledger")
	case c.Parallel < 0 || c.Timeout < 0:
		return errors.New("s3: Parallel and Timeout must be positive")
	}
	return nil
}

// ParseURL returns the Config that a blob URL names,
// s3://bucket?endpoint=http://host:port&region=name, without credentials
// or ledger. It returns an error for another scheme, a missing bucket or
// endpoint, or an unknown parameter.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("blob URL: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.User != nil {
		return Config{}, fmt.Errorf("blob URL %q: want s3://bucket?endpoint=http://host:port", u.Redacted())
	}
	c := Config{Bucket: u.Host}
	for k, v := range u.Query() {
		switch k {
		case "endpoint":
			c.Endpoint = v[0]
		case "region":
			c.Region = v[0]
		default:
			return Config{}, fmt.Errorf("blob URL: unknown parameter %q: want endpoint or region", k)
		}
	}
	if c.Endpoint == "" {
		return Config{}, errors.New("blob URL: no endpoint parameter: want s3://bucket?endpoint=http://host:port")
	}
	return c, nil
}

// Store is a content-addressed blob store in an S3 bucket. It is safe for
// concurrent use, also by several processes sharing the bucket and the
// ledger.
type Store struct {
	cfg    Config
	client *minio.Client
}

// New returns a Store in the configured bucket. It returns an error if the
// configuration is invalid or the bucket cannot be reached or does not exist.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Endpoint)
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: u.Scheme == "https",
		Region: cfg.Region,
		// Path-style requests work with every S3-compatible server and
		// need no DNS name per bucket.
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &Store{cfg: cfg, client: client}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3: bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3: bucket %s does not exist at %s", cfg.Bucket, cfg.Endpoint)
	}
	return s, nil
}

// bound applies the default timeout to a context without a deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Stage holds b in memory for [Store.CommitBatch]: the bytes are in memory
// already, and a PUT sends them from there. It returns ctx's error if it
// has ended.
func (s *Store) Stage(ctx context.Context, b []byte) (*blob.Staged, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob stage: %w", err)
	}
	return blob.Hold(b), nil
}

// CommitBatch claims the staged blobs' keys in the ledger, then writes
// those not in the bucket yet, at most Config.Parallel at once. It
// returns the ledger's error, or the requests' errors joined; blobs written
// before an error are left to [Store.Sweep]. The staged blobs are
// discarded either way.
func (s *Store) CommitBatch(ctx context.Context, staged []*blob.Staged) error {
	defer func() {
		for _, st := range staged {
			st.Discard()
		}
	}()
	byKey := make(map[string][]byte, len(staged))
	for _, st := range staged {
		if st.Bytes() == nil && st.Key() != blob.Key(nil) {
			return fmt.Errorf("blob commit %s: not staged by this store", st.Key())
		}
		byKey[st.Key()] = st.Bytes()
	}
	return s.putAll(ctx, byKey)
}

// PutBytes stores b and returns its key; if the key is stored already it
// writes nothing. It returns the ledger's error or the server's.
func (s *Store) PutBytes(ctx context.Context, b []byte) (string, error) {
	key := blob.Key(b)
	if err := s.putAll(ctx, map[string][]byte{key: b}); err != nil {
		return "", err
	}
	return key, nil
}

// putAll claims the keys, then writes the missing objects.
func (s *Store) putAll(ctx context.Context, byKey map[string][]byte) error {
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if err := s.cfg.Ledger.ClaimBlobs(ctx, keys); err != nil {
		return fmt.Errorf("blob put: claim: %w", err)
	}
	errs := make([]error, len(keys))
	sem := make(chan struct{}, s.cfg.Parallel)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.put(ctx, k, byKey[k])
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// put writes the object unless it exists.
func (s *Store) put(ctx context.Context, key string, b []byte) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	switch ok, err := s.exists(ctx, key); {
	case err != nil:
		return fmt.Errorf("blob put %s: %w", key, err)
	case ok:
		return nil
	}
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(b), int64(len(b)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	return nil
}

// Open returns the blob stored under key, positioned at its start, and its
// size; the caller closes it. It returns an EINVALID error for a malformed
// key, ENOTFOUND if no blob has that key, and the server's error.
func (s *Store) Open(ctx context.Context, key string) (io.ReadSeekCloser, int64, error) {
	if !blob.ValidKey(key) {
		return nil, 0, invalidKey(key)
	}
	// The object's reads run on ctx after Open returns: the caller's
	// context bounds them, not the default timeout.
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("blob open: %w", err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		if notFound(err) {
			return nil, 0, holdfast.Errorf(holdfast.ENOTFOUND, "blob %s not found", key)
		}
		return nil, 0, fmt.Errorf("blob open: %w", err)
	}
	return obj, info.Size, nil
}

// Exists reports whether a blob is stored under key. It returns an EINVALID
// error for a malformed key and the server's error.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	if !blob.ValidKey(key) {
		return false, invalidKey(key)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ok, err := s.exists(ctx, key)
	if err != nil {
		return false, fmt.Errorf("blob exists: %w", err)
	}
	return ok, nil
}

func (s *Store) exists(ctx context.Context, key string) (bool, error) {
	_, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	switch {
	case err == nil:
		return true, nil
	case notFound(err):
		return false, nil
	}
	return false, err
}

// notFound reports whether err is the server's answer that the object does
// not exist.
func notFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == minio.NoSuchKey || code == "NotFound"
}

func invalidKey(key string) error {
	return holdfast.Errorf(holdfast.EINVALID, "invalid blob key %q: want %d lowercase hex digits", key, blob.KeyLen)
}
