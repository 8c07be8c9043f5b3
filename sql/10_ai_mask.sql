-- Databricks' ai_mask: hide personal data before it goes anywhere else.
SET aiquery.requestTags = '{"project": "examples", "script": "ai_mask"}';

CREATE OR REPLACE TEMP VIEW messages AS
SELECT * FROM VALUES
  (1, 'John Doe lives in New York. His email is john.doe@example.com.'),
  (2, 'Call Jane Roe at 555-1234 or write to jane@example.com.')
AS t(message_id, message);

SELECT message_id, ai_mask(message, array('person', 'email', 'phone')) AS masked
FROM messages
ORDER BY message_id;
