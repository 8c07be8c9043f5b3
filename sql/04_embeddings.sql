-- Embeddings into a Delta table: ARRAY<FLOAT>, many rows per request.
SET aiquery.requestTags = '{"project": "examples", "script": "embeddings"}';

CREATE OR REPLACE TEMP VIEW documents AS
SELECT * FROM VALUES
  (1, 'Delta Lake brings ACID transactions to data lakes.'),
  (2, 'Apache Spark runs large-scale data processing on clusters.'),
  (3, 'A good espresso needs freshly ground beans and the right pressure.')
AS t(doc_id, text);

CREATE SCHEMA IF NOT EXISTS aiquery_examples;

CREATE OR REPLACE TABLE aiquery_examples.document_embeddings USING DELTA AS
SELECT doc_id, text, ai_query('databricks-gte-large-en', text) AS embedding
FROM documents;

SELECT doc_id, size(embedding) AS dimensions
FROM aiquery_examples.document_embeddings
ORDER BY doc_id;
