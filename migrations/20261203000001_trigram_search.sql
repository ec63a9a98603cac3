-- Free-text search of the applications list (project title and applicant) through a trigram
-- index instead of a scan of every row. pg_trgm is a trusted extension (PostgreSQL 13 and
-- later): the owner of the database may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
