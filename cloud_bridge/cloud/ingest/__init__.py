"""MQTT → time-series store + evidence ledger: the ingester and its TSDB writer."""
