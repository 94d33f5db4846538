"""Step 3: the index on disk or an object store (store, the only lancedb user), its records
and Arrow forms (records), the shared embedding cache (cache), one writer at a time (locks), and
what an IO failure means to the user (failures)."""
