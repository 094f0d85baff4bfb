"""The edge API (FastAPI): thin routes over the agent's state."""
