-- Structured extraction: responseFormat from a DDL struct, then from_json into columns.
SET aiquery.requestTags = '{"project": "examples", "script": "extract"}';

CREATE OR REPLACE TEMP VIEW invoices AS
SELECT * FROM VALUES
  ('INV-1001', 'Invoice from Acme Corp dated 2026-03-02, total 1,250.00 EUR, due in 30 days.'),
  ('INV-1002', 'Globex Ltd billed us 980.50 USD on 2026-03-05 for consulting services.')
AS t(invoice_id, text);

WITH extracted AS (
  SELECT invoice_id,
         ai_query('databricks-gpt-5-4', concat('Extract the vendor, amount and currency: ', text),
                  responseFormat => 'STRUCT<vendor: STRING, amount: DOUBLE, currency: STRING>') AS json
  FROM invoices
)
SELECT invoice_id, parsed.vendor, parsed.amount, parsed.currency
FROM (SELECT invoice_id, from_json(json, 'vendor STRING, amount DOUBLE, currency STRING') AS parsed FROM extracted)
ORDER BY invoice_id;
