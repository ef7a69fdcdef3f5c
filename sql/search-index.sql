-- The search index, for a table past what a replica's mirror holds: built by `rinha
-- index-search` (see docs/operations.md), never at a replica's start, since on a large table it
-- takes minutes. CONCURRENTLY: writes go on while it is built. Each statement runs on its own,
-- outside any transaction, with no statement timeout. Without fastupdate: the pending list it
-- would keep holds the entries of the latest writes unsorted, and every search reads all of it
-- (a search for 'node' took 493 ms with 3,000,000 people stored, and 2 ms once it was merged);
-- each write then adds its trigrams to the index itself instead.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX CONCURRENTLY IF NOT EXISTS pessoas_busca_trgm
    ON pessoas USING gin (pessoas_busca(apelido, nome, stack) gin_trgm_ops)
    WITH (fastupdate = off);
