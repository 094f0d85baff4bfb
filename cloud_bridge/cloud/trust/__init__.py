"""Trust at the cloud: the gateway registry, the ingester's proof checks, the audit and the broker's
per-gateway credentials and ACL (README "Trust model"). Importing this package does nothing."""
