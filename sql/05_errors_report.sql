-- failOnError => false: the query completes; failed rows carry an errorMessage to report on.
SET aiquery.requestTags = '{"project": "examples", "script": "errors"}';

CREATE OR REPLACE TEMP VIEW prompts AS
SELECT * FROM VALUES
  (1, 'Summarize: Quarterly revenue grew 12 percent. Costs stayed flat.'),
  (2, CAST(NULL AS STRING)),
  (3, 'Summarize: The new warehouse opens in May. Hiring starts in March.')
AS t(id, prompt);

CREATE OR REPLACE TEMP VIEW answers AS
SELECT id, ai_query('databricks-gpt-5-4', prompt, failOnError => false) AS response
FROM prompts;

SELECT id,
       response.result AS answer,
       response.errorMessage AS error,
       CASE WHEN response.errorMessage IS NOT NULL THEN 'failed'
            WHEN response.result IS NULL THEN 'no input'
            ELSE 'ok' END AS outcome
FROM answers
ORDER BY id;
