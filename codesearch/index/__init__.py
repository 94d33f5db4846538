"""Step 4: keeping an index current: plan (what changed), indexer (chunk -> embed what is
missing -> store), order (what to embed first), run (one `cs index`, its engines and
`--background`), background, ray, watch, status."""
