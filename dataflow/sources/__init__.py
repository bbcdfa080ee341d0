"""Sources: HTTP only. A paged JSON client (http) configured with an auth (a requests
AuthBase: hawk, bearer) and a paginator (paginators); `connection` builds a deployment's
source. No database, no Airflow."""
