"""The plant engineer's web console, served by the agent on its API address (see README, "Console")."""
