"""Which instances a session runs: the options resolved once, the tasks read and filtered, the items."""
