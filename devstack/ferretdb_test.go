package devstack

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestFerretDBRequiresSCRAM: the MongoDB target the tests run is the real
// FerretDB with authentication on: its setup user reads and writes, a
// client without credentials is refused.
func TestFerretDBRequiresSCRAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f, err := StartFerretDB(ctx, t.TempDir(), port, "sluice", "scram-test-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	users := c.Database("app").Collection("users")
	if _, err := users.InsertOne(ctx, bson.D{{Key: "email", Value: "a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := users.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("count %d, %v", n, err)
	}
	anon, err := mongo.Connect(options.Client().ApplyURI(fmt.Sprintf("mongodb://%s/", f.Addr())).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Disconnect(ctx)
	_, err = anon.Database("app").Collection("users").CountDocuments(ctx, bson.D{})
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 13 {
		t.Fatalf("a client without credentials: %v", err)
	}
	t.Logf("without credentials: %v", ce)
}
