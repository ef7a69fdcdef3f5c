-- The search index, for a table past what a replica's mirror holds: built by `rinha
-- index-search` (see docs/operations.md), never at a replica's start, since on a large table it
-- takes minutes. CONCURRENTLY: writes go on while it is built. Each statement runs on its own,
-- outside any transaction, with no statement timeout.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX CONCURRENTLY IF NOT EXISTS pessoas_busca_trgm
    ON pessoas USING gin (pessoas_busca(apelido, nome, stack) gin_trgm_ops);
