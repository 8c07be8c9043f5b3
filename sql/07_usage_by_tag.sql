-- Usage by request tag: tokens per script of the examples project.
SELECT request_tags['script']                  AS script,
       count(*)                                AS requests,
       sum(coalesce(total_tokens, 0))          AS tokens
FROM system.ai_gateway.usage
WHERE request_tags['project'] = 'examples'
GROUP BY request_tags['script']
ORDER BY script;
