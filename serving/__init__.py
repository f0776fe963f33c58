"""Ray Serve: the served champion, hot swap and deletion intake (see the serving issue)."""
