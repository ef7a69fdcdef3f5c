-- The people table. Applied by a replica at start when it differs from the schema recorded in
-- rinha_schema, under an advisory lock; idempotent.

CREATE TABLE IF NOT EXISTS rinha_schema (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    applied text    NOT NULL
);

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

-- The text a search matches, lower-cased, in two parts: apelido and nome, and the stack's items,
-- each a line, so that a match never spans two fields. The trigram index of
-- sql/search-index.sql is over both parts, apart: a stack item from a short list of languages
-- (`Clojure`, `Scala`) is held by millions, and its trigrams, mixed with the names', would leave
-- a term such as `re ks` thousands of rows to check where the names alone leave a few. A replica
-- reads rows through the index only when its mirror is full, with a pattern that also matches
-- what full case folding, its own, maps apart from lower() (see `SearchPattern` in
-- src/mirror/database.rs), and checks each row it gets with its own folding. Kept to lower() and
-- concatenation: building the index evaluates it for every row (mapping those characters here
-- made it four times as costly). IMMUTABLE, as an index needs: they read nothing but their
-- arguments.
CREATE OR REPLACE FUNCTION pessoas_busca_nomes(apelido varchar, nome varchar)
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(apelido || E'\n' || nome);

CREATE OR REPLACE FUNCTION pessoas_busca_stack(stack varchar[])
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(coalesce(array_to_string(stack, E'\n'), ''));

-- The whole text, for the rows a replica reads with no index (those left out since the last
-- `rinha index-search`).
CREATE OR REPLACE FUNCTION pessoas_busca(apelido varchar, nome varchar, stack varchar[])
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN pessoas_busca_nomes(apelido, nome) || E'\n' || pessoas_busca_stack(stack);

-- Short grams (one or two characters of a folded field; see src/index/grams.rs), each with up
-- to 50 of the people whose fields hold it, or a few more: any 50 is what a search returns. A
-- replica past its mirror's budget finds here what the trigram index cannot narrow down (terms
-- of one or two characters, and those without three ASCII letters or digits in a row). The
-- writers list each person they insert in the same statement, under the grams whose lists
-- they do not know to be full; with the contest's payloads every list is full after a few
-- thousand people, and no write lists anything from then on. People written behind the API's
-- back are listed by `rinha index-search`.
CREATE TABLE IF NOT EXISTS pessoas_gramas (
    grama text   PRIMARY KEY,
    ids   uuid[] NOT NULL
);

-- Spaced grams (three or four characters of a folded field, holding a space; see
-- src/index/grams.rs), each with up to 50 of the people whose fields hold it, listed by `rinha
-- index-search` for the people of the snapshot its search index and filter are made under: a
-- term with a space has few trigrams that narrow it down. `antes` is that snapshot's `xmax`.
-- The row of the empty gram, written after every list of a snapshot, says they are complete.
-- The people stored since are in the replicas' memory, or read as the trigram index's are.
CREATE TABLE IF NOT EXISTS pessoas_gramas_espaco (
    grama text   PRIMARY KEY,
    ids   uuid[] NOT NULL,
    antes bigint NOT NULL
);

-- The filter of the seven-byte pieces (src/index/pieces.rs) of every person a snapshot saw
-- committed, in parts of 1 MiB, saved by `rinha index-search` for a table past what a replica's
-- mirror holds. A replica loads it at start, rather than reading the people it leaves out,
-- and adds the people committed since; with it, a search that finds fewer than 50 people in
-- memory asks the database only when its term may be among the people left out.
CREATE TABLE IF NOT EXISTS pessoas_pedacos (
    parte integer PRIMARY KEY,
    bits  bytea   NOT NULL
);
-- Random bits: not worth trying to compress.
ALTER TABLE pessoas_pedacos ALTER COLUMN bits SET STORAGE EXTERNAL;

-- The snapshot the filter was made under (see `snapshot_columns!` in src/store/queries.rs).
CREATE TABLE IF NOT EXISTS pessoas_pedacos_visto (
    one         boolean  PRIMARY KEY DEFAULT true CHECK (one),
    snapshot_xmax bigint   NOT NULL,
    in_progress   bigint[] NOT NULL
);
