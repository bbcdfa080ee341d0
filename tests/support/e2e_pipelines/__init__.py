"""A team's own pipeline package, as PIPELINE_PACKAGES finds it: the end-to-end stack's."""
