-- The people table. Applied by every replica at start, under an advisory lock; idempotent.

CREATE TABLE IF NOT EXISTS pessoas (
    id          uuid         PRIMARY KEY,
    -- varchar(n) counts characters, matching the API's limits.
    apelido     varchar(32)  NOT NULL,
    nome        varchar(100) NOT NULL,
    nascimento  date         NOT NULL,
    stack       varchar(32)[],
    -- The transaction that inserted the row. Replicas keep the people in memory and search
    -- there; they load and read new rows in this column's order (see src/mirror/).
    insert_xact bigint       NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    CONSTRAINT pessoas_apelido_key UNIQUE (apelido)
);

-- With id, so that a replica loads the table in pages, each one an index range.
CREATE INDEX IF NOT EXISTS pessoas_insert_xact_id ON pessoas (insert_xact, id);

-- Only insert_xact is ever estimated by the planner; the other columns are found by unique
-- index or not filtered at all, so ANALYZE skips them. On 46,000 rows with 13-item stacks that
-- takes ANALYZE from about 0.5 s to 0.07 s.
ALTER TABLE pessoas
    ALTER COLUMN id SET STATISTICS 0,
    ALTER COLUMN apelido SET STATISTICS 0,
    ALTER COLUMN nome SET STATISTICS 0,
    ALTER COLUMN nascimento SET STATISTICS 0,
    ALTER COLUMN stack SET STATISTICS 0;

-- The text a search matches, lower-cased: apelido, nome and each stack item, one a line, so
-- that a match never spans two fields. The trigram index of sql/search-index.sql is over it; a
-- replica reads rows through it only when its mirror is full, with a pattern that also matches
-- what full case folding, its own, maps apart from lower() (see `like_pattern` in
-- src/mirror/), and checks each row it gets with its own folding. Kept to lower() and
-- concatenation: building the index evaluates it for every row (mapping those characters here
-- made it four times as costly). IMMUTABLE, as an index needs: it reads nothing but its
-- arguments.
CREATE OR REPLACE FUNCTION pessoas_busca(apelido varchar, nome varchar, stack varchar[])
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(apelido || E'\n' || nome || E'\n' || coalesce(array_to_string(stack, E'\n'), ''));
