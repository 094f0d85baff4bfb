"""The evaluator's portal, served by `edgegw serve` next to the evidence API (same users and roles)."""
