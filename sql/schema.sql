-- The people table. Applied by every replica at start, under an advisory lock; idempotent.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE IF NOT EXISTS pessoas (
    id         uuid         PRIMARY KEY,
    -- varchar(n) counts characters, matching the API's limits.
    apelido    varchar(32)  NOT NULL,
    nome       varchar(100) NOT NULL,
    nascimento date         NOT NULL,
    stack      varchar(32)[],
    -- apelido, nome and stack items one per line: the search index covers this column, and the
    -- query re-checks each field, so the index is a pre-filter only.
    busca      text         NOT NULL,
    CONSTRAINT pessoas_apelido_key UNIQUE (apelido)
);

-- About 100 trigrams per person. New entries wait in the index's pending list until the
-- replicas merge it, every few dozen rows (see src/writer.rs); every search reads that list, so
-- it must stay short. The limit is only a backstop: past it, the INSERT that overflows the list
-- merges it on its request's time.
CREATE INDEX IF NOT EXISTS pessoas_busca_trgm ON pessoas USING gin (busca gin_trgm_ops);
ALTER INDEX pessoas_busca_trgm SET (gin_pending_list_limit = 512);

-- Only busca is ever estimated by the planner (ILIKE against the trigram index); the other
-- columns are found by unique index or not filtered at all, so ANALYZE skips them. On 46,000
-- rows with 13-item stacks that takes ANALYZE from about 0.5 s to 0.07 s.
ALTER TABLE pessoas
    ALTER COLUMN id SET STATISTICS 0,
    ALTER COLUMN apelido SET STATISTICS 0,
    ALTER COLUMN nome SET STATISTICS 0,
    ALTER COLUMN nascimento SET STATISTICS 0,
    ALTER COLUMN stack SET STATISTICS 0;
