"""What an endpoint name means, resolved on the driver: `catalog` (the Databricks-provided
names) and `registry` (configuration sources, `Endpoint`, `Secret`, `configure`)."""
