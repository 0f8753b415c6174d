"""The agent's side of an item: which agent runs, its sandboxed container, packing its workspace."""
