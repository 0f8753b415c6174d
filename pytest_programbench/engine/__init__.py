"""The Docker engines: the one place that talks to Docker, task images, the fleet, the run lock."""
