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

CREATE INDEX IF NOT EXISTS pessoas_busca_trgm ON pessoas USING gin (busca gin_trgm_ops);
