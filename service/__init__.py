"""FastAPI job service (POST /v1/jobs, status, cancel, results, metrics); built by the job-service issue."""
