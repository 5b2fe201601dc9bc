package store

import (
	"context"
	"fmt"
	"time"
)

// FirstDelivery records that endpoint's webhook delivery, known by keys, was
// acted on at now, and reports whether it was new (true: none of its keys was
// recorded) or not (false: a duplicate or a replay). Keys are the caller's
// hashes of the delivery (of its signed body, of its delivery id); every key
// is recorded either way, and outlives a restart until PruneDeliveries
// removes it. Errors are the store's (a failing database, ErrFileReplaced).
func (s *SQLite) FirstDelivery(ctx context.Context, endpoint string, keys []string, now time.Time) (bool, error) {
	var first bool
	err := s.w.write(ctx, func(ctx context.Context, tx *cachedTx) error {
		first = true // recomputed on a re-run
		for _, key := range keys {
			res, err := tx.ExecContext(ctx,
				"INSERT INTO webhook_deliveries (endpoint, key, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
				endpoint, key, formatTime(now))
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			first = first && n == 1
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store %s: record webhook delivery: %w", s.path, err)
	}
	return first, nil
}

// ForgetDelivery removes endpoint's delivery keys, so that the sender's retry
// of a delivery that was not acted on (the queue was full) is not refused as a
// duplicate.
func (s *SQLite) ForgetDelivery(ctx context.Context, endpoint string, keys []string) error {
	err := s.w.write(ctx, func(ctx context.Context, tx *cachedTx) error {
		for _, key := range keys {
			if _, err := tx.ExecContext(ctx, "DELETE FROM webhook_deliveries WHERE endpoint = ? AND key = ?", endpoint, key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s: forget webhook delivery: %w", s.path, err)
	}
	return nil
}

// PruneDeliveries deletes the delivery keys recorded before before and
// returns how many it deleted.
func (s *SQLite) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.w.write(ctx, func(ctx context.Context, tx *cachedTx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM webhook_deliveries WHERE seen_at < ?", formatTime(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store %s: prune webhook deliveries: %w", s.path, err)
	}
	return n, nil
}
