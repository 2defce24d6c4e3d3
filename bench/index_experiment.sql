-- Bench-only index experiment, applied to the *_bench database for one run and removed after:
--   .venv/bin/python bench/search_load.py --setup-sql bench/index_experiment.sql ...
-- Covering versions of the partial indexes that the category + price and the near queries
-- use, so that a count on the filters alone is an index-only scan (no heap visits).
CREATE INDEX IF NOT EXISTS bench_listing_active_category_price_cov
    ON listings_listing (category_id, price) INCLUDE (available_until)
    WHERE status = 'active';
CREATE INDEX IF NOT EXISTS bench_listing_active_place_cov
    ON listings_listing (lat, lng) INCLUDE (available_until)
    WHERE status = 'active';
ANALYZE listings_listing;
-- teardown
DROP INDEX IF EXISTS bench_listing_active_category_price_cov;
DROP INDEX IF EXISTS bench_listing_active_place_cov;
ANALYZE listings_listing;
