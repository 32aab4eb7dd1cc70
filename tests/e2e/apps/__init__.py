"""Real applications (RQ jobs, a Celery app) that the end-to-end tests run through the bridge."""
