"""The admin/SOC listener: health, readiness, metrics, the SOC API and the dashboard."""
