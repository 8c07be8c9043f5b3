-- Databricks' ai_extract: a STRUCT of strings by label (v1), then a typed JSON schema (v2,
-- a VARIANT whose fields variant_get reads with their types).
SET aiquery.requestTags = '{"project": "examples", "script": "ai_extract"}';

CREATE OR REPLACE TEMP VIEW invoice_texts AS
SELECT * FROM VALUES
  ('INV-1', 'Invoice #12345 from Acme Corp for $1,250.00 dated 2024-01-15. Contact billing@acme.example.'),
  ('INV-2', 'Invoice #777 from Globex Ltd for $99.50 dated 2024-02-01. Contact ap@globex.example.')
AS t(id, text);

SELECT id,
       ai_extract(text, array('email', 'date')) AS found,
       variant_get(invoice, '$.response.total_amount', 'DOUBLE') AS total,
       variant_get(invoice, '$.response.vendor_name', 'STRING') AS vendor
FROM (
  SELECT id, text,
         ai_extract(text, '{"invoice_id": {"type": "string"},
                            "vendor_name": {"type": "string"},
                            "total_amount": {"type": "number"}}') AS invoice
  FROM invoice_texts
)
ORDER BY id;
