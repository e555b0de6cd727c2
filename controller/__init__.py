"""The MediaJob controller: finishes media jobs whose NCA webhooks never arrive."""
