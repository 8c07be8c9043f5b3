-- Databricks' ai_classify: one label per ticket (v1), then labels with descriptions and
-- several labels per ticket (v2, a VARIANT: {"response": [...], "error_message": null}).
SET aiquery.requestTags = '{"project": "examples", "script": "ai_classify"}';

CREATE OR REPLACE TEMP VIEW tickets AS
SELECT * FROM VALUES
  (1, 'I was charged twice for my subscription, please refund one payment.'),
  (2, 'The parcel delivery is late and the box arrived damaged.'),
  (3, 'I cannot log in after the password reset.')
AS t(ticket_id, body);

SELECT ticket_id,
       ai_classify(body, array('billing', 'delivery', 'login')) AS topic,
       ai_classify(body,
                   '{"billing": "charges, payments, refunds",
                     "shipping": "parcels, delivery, damaged boxes",
                     "account": "log in, password, profile"}',
                   map('multilabel', 'true', 'instructions', 'Classify support tickets.')) AS topics
FROM tickets
ORDER BY ticket_id;
