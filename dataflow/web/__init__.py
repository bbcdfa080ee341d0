"""Single sign-on for the web UI and API (the FAB auth manager's configuration)."""
