"""Both ends of the wire: the contract and codec (`wire`), the edge's uplink (`uplink`: buffer, publisher),
the cloud service (`cloud`: ingest, ledger, evidence, API) and the pure metrics both ends use (`metrics`)."""
