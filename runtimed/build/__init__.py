"""Making images from containers: commit (and, later, Dockerfile builds)."""
