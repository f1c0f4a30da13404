package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/internal/testkit/s3test"
	"github.com/holdfast/holdfast/media"
)

// inBucket stores receipt images in the server's bucket.
func inBucket(srv *s3test.Server) func(*app.Config) {
	return func(c *app.Config) {
		c.Receipts.BlobURL = srv.URL()
		c.Receipts.BlobAccessKey, c.Receipts.BlobSecretKey = srv.AccessKey, srv.SecretKey
	}
}

// mustUpload uploads img as the receipt of a new transfer and returns the
// receipt's id.
func mustUpload(t *testing.T, c *apitest.Client, img []byte) string {
	t.Helper()
	from, to := c.MustAccount(t, "EUR", true), c.MustAccount(t, "EUR", true)
	tr := c.Do(t, "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "EUR")).MustStatus(t, 201).JSON(t)["id"].(string)
	return c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", img).MustStatus(t, 202).JSON(t)["id"].(string)
}

// mustReady waits until the receipt's variants are made, and returns it.
func mustReady(t *testing.T, c *apitest.Client, id string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := c.Do(t, "GET", "/v1/receipts/"+id, nil).MustStatus(t, 200).JSON(t)
		if r["status"] == "ready" {
			return r
		}
		if r["status"] == "failed" || time.Now().After(deadline) {
			t.Fatalf("receipt %s not ready: %v", id, r)
		}
	}
}

// bucketKeys lists the objects in the server's bucket.
func bucketKeys(t *testing.T, srv *s3test.Server) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	for obj := range srv.Client(t).ListObjects(context.Background(), srv.Bucket, minio.ListObjectsOptions{}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys[obj.Key] = true
	}
	return keys
}

func TestMain_ReceiptImagesInABucket(t *testing.T) {
	t.Parallel()
	srv := s3test.MustStart(t)
	m := apptest.MustStart(t, pgtest.NewDatabase(t), inBucket(srv))
	c := apptest.Admin(m).MustTenant(t, "s3-e2e")
	img := media.Generate(640, 480, 7)
	id := mustUpload(t, c, img)
	// The original is readable at once, before the workers are done.
	if got := c.Do(t, "GET", "/v1/receipts/"+id+"/original", nil).MustStatus(t, 200).Body; !bytes.Equal(got, img) {
		t.Fatal("the original downloaded differs from the upload")
	}
	r := mustReady(t, c, id)
	keys := bucketKeys(t, srv)
	if !keys[blob.Key(img)] {
		t.Fatalf("the original is not in the bucket: %v", keys)
	}
	for _, name := range []string{"thumbnail", "medium"} {
		body := c.Do(t, "GET", "/v1/receipts/"+id+"/"+name, nil).MustStatus(t, 200).Body
		v := r["variants"].(map[string]any)[name].(map[string]any)
		if len(body) == 0 || !keys[blob.Key(body)] || int(v["size"].(float64)) != len(body) {
			t.Fatalf("%s: %d bytes, in the bucket %v, variant %v", name, len(body), keys[blob.Key(body)], v)
		}
	}
	// Nothing went to the data directory.
	if _, err := os.Stat(filepath.Join(m.Config.DataDir, "blobs")); !os.IsNotExist(err) {
		t.Fatalf("the data directory has a blobs directory (%v)", err)
	}
}

func TestMain_ReceiptUploadedThroughOneReplicaReadThroughAnother(t *testing.T) {
	t.Parallel()
	srv := s3test.MustStart(t)
	nats := sharedNATS(t)
	db := pgtest.NewDatabase(t)
	a := apptest.MustStart(t, db, nats, inBucket(srv))
	b := apptest.MustStart(t, db, nats, inBucket(srv), func(c *app.Config) { c.Migrate = false })
	ca := apptest.Admin(a).MustTenant(t, "s3-replicas")
	cb := *ca
	cb.URL = b.HTTP.URL()
	img := media.Generate(800, 600, 11)
	id := mustUpload(t, ca, img)
	if got := cb.Do(t, "GET", "/v1/receipts/"+id+"/original", nil).MustStatus(t, 200).Body; !bytes.Equal(got, img) {
		t.Fatal("replica B read another original than A stored")
	}
	mustReady(t, &cb, id)
	for _, name := range []string{"thumbnail", "medium"} {
		fromA := ca.Do(t, "GET", "/v1/receipts/"+id+"/"+name, nil).MustStatus(t, 200).Body
		fromB := cb.Do(t, "GET", "/v1/receipts/"+id+"/"+name, nil).MustStatus(t, 200).Body
		if len(fromA) == 0 || !bytes.Equal(fromA, fromB) {
			t.Fatalf("%s: %d bytes through A, %d through B, equal %v", name, len(fromA), len(fromB), bytes.Equal(fromA, fromB))
		}
	}
}

func TestMain_BlobURLRefusedAtStart(t *testing.T) {
	t.Parallel()
	srv := s3test.MustStart(t)
	for name, configure := range map[string]func(*app.Config){
		"not s3":       func(c *app.Config) { c.Receipts.BlobURL = "file:///var/lib/holdfast/blobs" },
		"no bucket":    func(c *app.Config) { inBucket(srv)(c); c.Receipts.BlobURL = "s3://missing?endpoint=" + srv.Endpoint },
		"wrong secret": func(c *app.Config) { inBucket(srv)(c); c.Receipts.BlobSecretKey = "not-the-secret-0123456789" },
		"no secret":    func(c *app.Config) { inBucket(srv)(c); c.Receipts.BlobSecretKey = "" },
	} {
		t.Run(name, func(t *testing.T) {
			m := apptest.New(t, pgtest.NewDatabase(t), configure)
			err := m.Start(context.Background())
			m.Stop()
			if err == nil {
				t.Fatal("started")
			}
			if s := m.Config.Receipts.BlobSecretKey; s != "" && bytes.Contains([]byte(err.Error()), []byte(s)) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}
