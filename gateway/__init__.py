"""The edge agent: runtime (scheduling, normalization, supervision, OEE tracking), the edge API and the
`edgegw` command line (`gateway.cli`)."""
