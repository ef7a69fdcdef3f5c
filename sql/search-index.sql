-- The search index, for a table past what a replica's mirror holds: built by `rinha
-- index-search` (see docs/operations.md), never at a replica's start, since on a large table it
-- takes minutes. CONCURRENTLY: writes go on while it is built. Each statement runs on its own,
-- outside any transaction, with no statement timeout. A short pending list: a write appends its
-- trigrams there, and every search reads all of it, unsorted; once it holds 256 kB, the write
-- that finds it so merges it into the index. The default 4 MB made a search for 'node' take
-- 493 ms with 3,000,000 people stored (2 ms once merged); no list at all (fastupdate off) made
-- each write insert its trigrams one by one, too slow for the contest's writes at 0.45 CPU.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX CONCURRENTLY IF NOT EXISTS pessoas_busca_trgm
    ON pessoas USING gin (pessoas_busca(apelido, nome, stack) gin_trgm_ops)
    WITH (gin_pending_list_limit = 256);
