-- The search index, for a table past what a replica's mirror holds: built by `rinha
-- index-search` (see docs/operations.md), never at a replica's start, since on a large table it
-- takes minutes. CONCURRENTLY: writes go on while it is built. Each statement runs on its own,
-- outside any transaction, with no statement timeout.
--
-- Partial: only the rows of transactions before {xmax}, the `xmax` of the snapshot the same run
-- saves its filter of pieces under (the people a replica may leave out at start). The people
-- stored later are in the replicas' memory, so a write never touches this index; those a replica
-- leaves out later are read through the (insert_xact, id) index, and the next run covers them.
-- Named by that `xmax`, so that a run builds the new index before it drops the old one. One
-- index, two columns: a GIN index keeps each column's keys apart, so a search narrows the names
-- and the stacks each by their own trigrams.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX CONCURRENTLY IF NOT EXISTS pessoas_busca_{xmax}
    ON pessoas USING gin (pessoas_busca_nomes(apelido, nome) gin_trgm_ops,
                          pessoas_busca_stack(stack) gin_trgm_ops)
    WHERE insert_xact < {xmax};
