-- Full-text search over messages (PROTOCOL §13, issue 33): one GIN index of each live message's
-- words, in Postgres's `simple` configuration (lowercased words, no stemming and no stop words:
-- right for every language, and what `search.language` defaults to). An expression index, not a
-- stored tsvector column: the words are computed once at insert (and again when an edit or a
-- delete rewrites the body), and the table does not grow. Partial: only `message` entries that
-- are not deleted, so a delete takes its message out of the index in the same commit, and edit,
-- delete and reaction entries are never in it. GIN's pending list (fastupdate, on by default)
-- keeps the append cheap: measured in loadtest/RESULTS.md (issue 33).
--
-- On a large existing history this builds the index in one statement, and appends wait while it
-- does (a partitioned table cannot be indexed CONCURRENTLY): run `chorus migrate` at a quiet hour.
CREATE INDEX messages_search ON messages
    USING gin (to_tsvector('simple'::regconfig, body))
    WHERE kind = 'message' AND deleted_seq IS NULL;

-- Newest first: the same messages in the order search pages them. For a frequent word, walking
-- this backwards and checking each message's words finds a page in a few hundred rows, where the
-- GIN index would hand over every match to be sorted; the planner picks by the word's frequency
-- (ANALYZE keeps the index expression's most common words).
CREATE INDEX messages_search_newest ON messages (ts DESC, room DESC, seq DESC)
    WHERE kind = 'message' AND deleted_seq IS NULL;
