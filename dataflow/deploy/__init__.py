"""Running data-flow as deployed: a master app (api-server, scheduler, dag-processor,
triggerer) and worker apps (Celery workers), on Cloud Foundry or anywhere else."""
