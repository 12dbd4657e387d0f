"""Reports (日報・月報) from PII-free aggregates, and dunning letters (催告書)."""
