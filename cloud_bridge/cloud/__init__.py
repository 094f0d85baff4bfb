"""The cloud service: the ingester (`ingest`), the evidence ledger (`ledger`), the evidence figures, packs and
report (`evidence`), the evidence API (`api`) and the demo's embedded broker (`broker`)."""
