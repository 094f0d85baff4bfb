"""The evidence ledger in SQL: the schema and writes (`writer`), the reads for evidence (`store`) and the
equipment ledger (`equipment`)."""
