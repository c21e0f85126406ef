package devstack

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// DemoMongoTarget is the demo's MongoDB target (FerretDB).
const DemoMongoTarget = DemoTarget + "-mongo"

// SeedDemoMongo fills the demo database in FerretDB, once: customers with
// tagged fields at every depth the masking follows (email and ssn at the
// top, profile.phone nested, cards.number inside an array) and orders.
func SeedDemoMongo(ctx context.Context, f *FerretDB) error {
	c, err := f.Client()
	if err != nil {
		return err
	}
	defer c.Disconnect(ctx)
	db := c.Database(DemoDatabase)
	n, err := db.Collection("customers").CountDocuments(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("cannot read demo customers: %w", err)
	}
	if n > 0 {
		return nil
	}
	cities := []string{"Lisbon", "Oslo", "Austin", "Osaka", "Lyon"}
	var customers, orders []any
	for i := 1; i <= 50; i++ {
		customers = append(customers, bson.D{
			{Key: "_id", Value: i},
			{Key: "name", Value: fmt.Sprintf("Customer %d", i)},
			{Key: "email", Value: fmt.Sprintf("customer%d@example.com", i)},
			{Key: "ssn", Value: fmt.Sprintf("%03d-45-6789", i)},
			{Key: "city", Value: cities[i%len(cities)]},
			{Key: "profile", Value: bson.D{{Key: "phone", Value: fmt.Sprintf("+1 555 01%02d", i)}, {Key: "tier", Value: []string{"gold", "silver"}[i%2]}}},
			{Key: "cards", Value: bson.A{bson.D{{Key: "brand", Value: "visa"}, {Key: "number", Value: fmt.Sprintf("4111 1111 1111 %04d", i)}}}},
		})
	}
	for i := 1; i <= 200; i++ {
		orders = append(orders, bson.D{{Key: "_id", Value: i}, {Key: "customer", Value: 1 + i%50}, {Key: "total_cents", Value: 100 * i}})
	}
	if _, err := db.Collection("customers").InsertMany(ctx, customers); err != nil {
		return fmt.Errorf("cannot seed demo customers: %w", err)
	}
	if _, err := db.Collection("orders").InsertMany(ctx, orders); err != nil {
		return fmt.Errorf("cannot seed demo orders: %w", err)
	}
	return nil
}

// MongoURI is the URI an agent's MongoDB driver uses through the
// connector at addr: no user or password (sluice logs in for the agent),
// and directConnection, since the connector is the only address.
func (s *Stack) MongoURI(addr string) string {
	if addr == "" {
		addr = s.MongoAddr
	}
	return fmt.Sprintf("mongodb://%s/%s?directConnection=true", addr, DemoDatabase)
}
