-- Summarize a table: one ai_query call per row, with request tags for cost tracking.
SET aiquery.requestTags = '{"project": "examples", "script": "summarize"}';

CREATE OR REPLACE TEMP VIEW support_tickets AS
SELECT * FROM VALUES
  (1, 'My order arrived two weeks late. The box was damaged and one item was missing.'),
  (2, 'The app crashes whenever I open the settings page. I reinstalled it twice.'),
  (3, 'I was charged twice for the same subscription this month. Please refund one.'),
  (4, 'Great service from Anna on the phone. She solved my billing issue quickly.')
AS t(ticket_id, body);

SELECT ticket_id,
       ai_query('databricks-gpt-5-4', concat('Summarize: ', body),
                modelParameters => named_struct('max_tokens', 100, 'temperature', 0.0)) AS summary
FROM support_tickets
ORDER BY ticket_id;
