-- Classify with returnType: the model's JSON answer is parsed into a typed struct.
SET aiquery.requestTags = '{"project": "examples", "script": "classify"}';

CREATE OR REPLACE TEMP VIEW reviews AS
SELECT * FROM VALUES
  (1, 'The headphones sound fantastic and the battery lasts all week. positive'),
  (2, 'Broke after two days, and support never answered my emails. negative'),
  (3, 'It does the job. Nothing special, nothing bad. neutral')
AS t(review_id, review);

SELECT review_id,
       ai_query('databricks-gpt-5-mini',
                concat('Classify the sentiment of this review as positive, negative or neutral: ', review),
                returnType => 'STRUCT<sentiment: STRING, confidence: DOUBLE>',
                responseFormat => '{"type": "json_schema", "json_schema": {"name": "sentiment", "schema": {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["sentiment", "confidence"], "additionalProperties": false}, "strict": true}}'
       ) AS label
FROM reviews
ORDER BY review_id;
